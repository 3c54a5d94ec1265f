"""Random-access splits that are never materialised: a lazy image array over ArrayRecord.

A split is a random-access source: the data policy decides which rows a batch holds, the loader
reads and decodes only those rows (`x[take]` with an index array). `RecordArray` is that `x`:
it has `shape`, `dtype` and `len`, and `__getitem__` for an int, a slice or an index array
reads the requested records and decodes them on a small thread pool (PIL and the ArrayRecord
reader release the GIL), so a batch's rows decode in parallel. No background thread is needed
to keep the compiled step fed: JAX dispatches the step asynchronously and the loop fetches
metrics only every few steps, so the host decodes batch t+1 while the device runs step t
(benchmarks/input_pipeline.py measures the overlap). Labels, ids, groups and captions stay
small in-memory arrays; `Dataset.subset` of a lazy `x` is a lazy view (`select`).

Why not Grain: the policies already produce deterministic, checkpointable index streams (CRAIG,
CREST, JTT upweighting, Poisson sampling...), which is the part of Grain that matters for
bitwise resume; what remains is reading rows by index, which a plain random-access source does
with no second sampler or iterator state to keep in step with the policy's. Decoding is a pure
function of the stored bytes, so the rows a batch reads and their values are exactly those of
the in-memory source.

Sources read here (the embedded ones stay in-memory arrays behind the same interface):
- tfds datasets prepared as ArrayRecord (`tfds.data_source`; robustdata/data/sources.py);
- the converter's output (`python -m robustdata.data.convert`, robustdata/data/convert.py):
  `image_folder_records` (a converted group-labelled image folder) and `caption_records` (a
  converted image-caption CSV/TSV).
A component that needs a whole split in host memory (a poisoning attack editing pixels, the
augmentation coreset's slot extension) may convert a lazy array with `np.asarray` only up to
`MATERIALIZE_LIMIT_BYTES` decoded; beyond it that is a ConfigError naming config.data.name.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import struct
import threading
from typing import Any, Callable, Optional, Sequence

import numpy as np

from robustdata.data.dataset import DataSplits, Dataset
from robustdata.registry import DATASETS, ConfigError, field_reader

FORMAT = "robustdata.records/1"
MANIFEST = "manifest.json"
MAGIC = b"RDR1"
# A lazy array converts to a whole NumPy array (np.asarray, np.concatenate...) only below this
# many decoded bytes; above, the component asking for it gets a ConfigError.
MATERIALIZE_LIMIT_BYTES = 2 << 30
DECODE_THREADS = max(1, min(8, os.cpu_count() or 1))
_NDARRAY_ONLY = frozenset(n for n in dir(np.ndarray) if not n.startswith("_")) - {
    "shape", "dtype", "ndim", "nbytes", "size"}


# --- The record format: b'RDR1', uint32 header length, a JSON header, the image bytes. --------

def pack_record(header: dict[str, Any], image: bytes) -> bytes:
  head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
  return MAGIC + struct.pack("<I", len(head)) + head + image


def unpack_record(record: bytes) -> tuple[dict[str, Any], bytes]:
  if record[:4] != MAGIC:
    raise ValueError("not a robustdata record (bad magic)")
  (n,) = struct.unpack("<I", record[4:8])
  return json.loads(record[8:8 + n]), record[8 + n:]


def decode_image(data: bytes, shape: Sequence[int]) -> np.ndarray:
  """PNG/JPEG bytes as float32 in [0, 1] of `shape` (H, W, C); exactly uint8 / 255."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    a = np.asarray(im.convert("RGB") if shape[-1] == 3 else im)
  if a.ndim == 2:
    a = a[..., None]
  if a.shape != tuple(shape):
    raise ValueError(f"decoded image has shape {a.shape}, the manifest says {tuple(shape)}")
  return a.astype(np.float32) / 255.0


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def split_fingerprint(shards: Sequence[dict[str, Any]]) -> str:
  """sha256 (16 hex) over each shard's count and content hashes, in order."""
  text = json.dumps([[s["count"], s["sha256"], s["meta_sha256"]] for s in shards])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- The lazy array. --------------------------------------------------------------------------

class _Reader:
  """A source (`len`, `__getitems__(list[int])`) with a decode function and a thread pool,
  shared by a RecordArray and its views."""

  def __init__(self, source, decode: Callable[[Any], np.ndarray], threads: int, what: str):
    self.source, self.decode, self.threads, self.what = source, decode, threads, what
    self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._lock = threading.Lock()

  def pool(self) -> concurrent.futures.ThreadPoolExecutor:
    with self._lock:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, "record-decode")
      return self._pool

  def __getstate__(self):  # a pool does not pickle; a copy makes its own
    return {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_lock")}

  def __setstate__(self, state):
    self.__dict__.update(state, _pool=None, _lock=threading.Lock())


class RecordArray:
  """A read-only (N, *shape) array whose rows are records of a random-access source, decoded
  on demand. `rows` maps this array's rows to the source's (a lazy view; None: all)."""

  def __init__(self, source, decode: Callable[[Any], np.ndarray], *, shape: Sequence[int],
               dtype=np.float32, what: str = "a record source", threads: int = DECODE_THREADS,
               rows: Optional[np.ndarray] = None, _reader: Optional[_Reader] = None):
    self._reader = _reader or _Reader(source, decode, threads, what)
    self._rows = None if rows is None else np.asarray(rows, np.int64)
    self._row_shape = tuple(int(s) for s in shape)
    self.dtype = np.dtype(dtype)

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self), *self._row_shape)

  @property
  def ndim(self) -> int:
    return 1 + len(self._row_shape)

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

  @property
  def size(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64))

  def __len__(self) -> int:
    return len(self._reader.source) if self._rows is None else len(self._rows)

  def __repr__(self) -> str:
    return f"RecordArray(shape={self.shape}, dtype={self.dtype}, {self._reader.what})"

  def _positions(self, key) -> np.ndarray:
    """The rows of this array that `key` (slice, ints, bool mask) names, bounds-checked."""
    n = len(self)
    if isinstance(key, slice):
      return np.arange(*key.indices(n), dtype=np.int64)
    idx = np.asarray(key)
    if idx.dtype == bool:
      if idx.shape != (n,):
        raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
      return np.flatnonzero(idx)
    if idx.dtype.kind not in "iu":
      raise IndexError(f"only integers, slices and integer or boolean arrays index a "
                       f"RecordArray, got {idx.dtype}")
    idx = idx.astype(np.int64).ravel()
    if idx.size and (idx.min() < -n or idx.max() >= n):
      raise IndexError(f"index out of range for {n} rows")
    return np.where(idx < 0, idx + n, idx)

  def select(self, indices) -> "RecordArray":
    """The lazy view of the rows `indices` (nothing is read)."""
    pos = self._positions(indices)
    rows = pos if self._rows is None else self._rows[pos]
    return RecordArray(None, None, shape=self._row_shape, dtype=self.dtype, rows=rows,
                       _reader=self._reader)

  def __getitem__(self, key) -> np.ndarray:
    rest: tuple = ()
    if isinstance(key, tuple):
      key, rest = (key[0] if key else slice(None)), key[1:]
    if not isinstance(key, slice) and np.ndim(key) == 0 and not isinstance(key, np.ndarray):
      out = self.read(np.asarray([key]))[0]
      return out[rest] if rest else out
    idx = None if isinstance(key, slice) else np.asarray(key)
    out = self.read(self._positions(key))
    if idx is not None and idx.dtype != bool and idx.ndim != 1:
      out = out.reshape(*idx.shape, *self._row_shape)
    return out[(slice(None),) * (1 if idx is None else max(idx.ndim, 1)) + rest] if rest else out

  def read(self, positions: np.ndarray) -> np.ndarray:
    """Rows `positions` of this array, decoded (a repeated row is read once)."""
    positions = self._positions(positions)
    out = np.empty((len(positions), *self._row_shape), self.dtype)
    if not len(positions):
      return out
    src = positions if self._rows is None else self._rows[positions]
    uniq, inverse = np.unique(src, return_inverse=True)
    reader = self._reader
    chunks = np.array_split(np.arange(len(uniq)), min(reader.threads, len(uniq)))
    decoded = np.empty((len(uniq), *self._row_shape), self.dtype)

    def work(part: np.ndarray) -> None:
      try:
        records = reader.source.__getitems__([int(i) for i in uniq[part]])
        for j, rec in zip(part, records):
          decoded[j] = reader.decode(rec)
      except ConfigError:
        raise
      except Exception as e:  # a corrupt shard: riegeli, PIL or the header parser complains
        raise ConfigError(f"{reader.what}: cannot read rows {uniq[part][:4].tolist()}...: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                          "the files are corrupt: reconvert or verify them (python -m "
                          "robustdata.data.convert --verify DIR)") from None

    if len(chunks) == 1:
      work(chunks[0])
    else:
      for f in [reader.pool().submit(work, c) for c in chunks]:
        f.result()
    out[:] = decoded[inverse.ravel()]
    return out

  def __array__(self, dtype=None, copy=None):
    if self.nbytes > MATERIALIZE_LIMIT_BYTES:
      raise ConfigError(
          f"{self._reader.what}: a component asked for the whole split in host memory "
          f"({self.shape} {self.dtype}, {self.nbytes / 2**30:.1f} GiB, above records."
          f"MATERIALIZE_LIMIT_BYTES = {MATERIALIZE_LIMIT_BYTES / 2**30:.1f} GiB); this split is "
          "read lazily from ArrayRecord: use a method that reads rows by index, or a smaller "
          "split (config.data.max_per_split)")
    out = self.read(np.arange(len(self)))
    return out if dtype is None else out.astype(dtype)

  def __getattr__(self, name: str):
    if name in _NDARRAY_ONLY:
      raise ConfigError(f"{self._reader.what}: .{name} is an in-memory array operation; this "
                        "split is read lazily from ArrayRecord (index it: x[rows]; or "
                        "np.asarray(x) for a split below records.MATERIALIZE_LIMIT_BYTES)")
    raise AttributeError(name)


def is_lazy(x) -> bool:
  return isinstance(x, RecordArray)


# --- The converter's shards. ------------------------------------------------------------------

class ShardSource:
  """Records of consecutive ArrayRecord shards as one random-access sequence (readers opened
  lazily, one per shard, shared by the decode threads)."""

  def __init__(self, paths: Sequence[str], counts: Sequence[int]):
    self.paths, self.counts = list(paths), [int(c) for c in counts]
    self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
    self._readers: list[Any] = [None] * len(self.paths)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return int(self.starts[-1])

  def reader(self, i: int):
    if self._readers[i] is None:
      from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
      with self._lock:
        if self._readers[i] is None:
          self._readers[i] = array_record_module.ArrayRecordReader(
              self.paths[i], "readahead_buffer_size:0")
    return self._readers[i]

  def __getitems__(self, keys: Sequence[int]) -> list[bytes]:
    keys = np.asarray(keys, np.int64)
    shard = np.searchsorted(self.starts, keys, side="right") - 1
    out: list[Any] = [None] * len(keys)
    for s in np.unique(shard):
      where = np.flatnonzero(shard == s)
      records = self.reader(int(s)).read([int(k) for k in keys[where] - self.starts[s]])
      for w, r in zip(where, records):
        out[w] = r
    return out

  def __getstate__(self):
    return {"paths": self.paths, "counts": self.counts, "starts": self.starts}

  def __setstate__(self, state):
    self.__dict__.update(state, _readers=[None] * len(state["paths"]), _lock=threading.Lock())


def read_manifest(data_dir: str, field: str = "config.data.data_dir") -> dict[str, Any]:
  path = os.path.join(data_dir or "", MANIFEST)
  if not data_dir or not os.path.isdir(data_dir):
    raise ConfigError(f"{field}={data_dir!r} is not a directory (a converter output: python -m "
                      "robustdata.data.convert)")
  if not os.path.isfile(path):
    raise ConfigError(f"{field}={data_dir!r} has no {MANIFEST}; it is not (or not yet) a "
                      "converter output: run python -m robustdata.data.convert to the end")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{field}={data_dir!r}: {MANIFEST} is not readable JSON "
                      f"({type(e).__name__}: {e})") from None
  if manifest.get("format") != FORMAT:
    raise ConfigError(f"{field}={data_dir!r}: {MANIFEST} has format "
                      f"{manifest.get('format')!r}; allowed: {FORMAT!r}")
  return manifest


def check_split(data_dir: str, manifest: dict[str, Any], split: str, *, full: bool = False,
                field: str = "config.data.data_dir") -> dict[str, Any]:
  """The manifest entry of `split`, after checking that its fingerprint matches its shard list
  and that every shard file has the recorded size and record count (and, with `full`, the
  recorded sha256; its metadata sidecar always)."""
  splits = manifest.get("splits", {})
  if split not in splits:
    raise ConfigError(f"{field}={data_dir!r} has no split {split!r}; its {MANIFEST} lists "
                      f"{sorted(splits)}")
  entry = splits[split]
  where = f"{field}={data_dir!r} split {split!r}"
  if split_fingerprint(entry["shards"]) != entry.get("fingerprint"):
    raise ConfigError(f"{where}: the fingerprint {entry.get('fingerprint')!r} in {MANIFEST} "
                      f"does not match its shards ({split_fingerprint(entry['shards'])}); the "
                      "manifest was edited or mixed with another conversion: reconvert")
  if sum(s["count"] for s in entry["shards"]) != entry["count"]:
    raise ConfigError(f"{where}: {MANIFEST} count {entry['count']} is not the sum of its "
                      "shards' counts; reconvert")
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  for s in entry["shards"]:
    path, meta = os.path.join(data_dir, s["file"]), os.path.join(data_dir, s["meta"])
    for p in (path, meta):
      if not os.path.isfile(p):
        raise ConfigError(f"{where}: shard file {p!r} is missing; rerun the converter (it "
                          "rewrites only what is missing or wrong)")
    size = os.path.getsize(path)
    if size != s["bytes"]:
      raise ConfigError(f"{where}: shard {s['file']} has {size} bytes, {MANIFEST} says "
                        f"{s['bytes']} (truncated or replaced); rerun the converter")
    if file_sha256(meta) != s["meta_sha256"] or (full and file_sha256(path) != s["sha256"]):
      raise ConfigError(f"{where}: the content of shard {s['file']} (or its metadata) does not "
                        f"match the sha256 in {MANIFEST}; it is corrupt: rerun the converter")
    try:
      reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
      count = reader.num_records()
      reader.close()
    except Exception as e:  # riegeli reports a corrupt footer as RuntimeError/ValueError
      raise ConfigError(f"{where}: shard {s['file']} is not a readable ArrayRecord file "
                        f"({type(e).__name__}); it is corrupt: rerun the converter") from None
    if count != s["count"]:
      raise ConfigError(f"{where}: shard {s['file']} holds {count} records, {MANIFEST} says "
                        f"{s['count']}; rerun the converter")
  return entry


def open_split(data_dir: str, manifest: dict[str, Any], split: str, *, what: str,
               full: bool = False) -> tuple[RecordArray, dict[str, list]]:
  """(lazy images, the per-example metadata lists from the shards' sidecars) of a split."""
  entry = check_split(data_dir, manifest, split, full=full)
  meta: dict[str, list] = {}
  for s in entry["shards"]:
    with open(os.path.join(data_dir, s["meta"]), encoding="utf-8") as f:
      for k, v in json.load(f)["examples"].items():
        meta.setdefault(k, []).extend(v)
  shape = tuple(manifest["image_shape"])
  source = ShardSource([os.path.join(data_dir, s["file"]) for s in entry["shards"]],
                       [s["count"] for s in entry["shards"]])
  decode = lambda rec: decode_image(unpack_record(rec)[1], shape)
  return RecordArray(source, decode, shape=shape, what=f"{what} split {split!r}"), meta


# --- The registered sources. ------------------------------------------------------------------

FOLDER_DEFAULTS = {"data_dir": "", "verify": "size"}
CAPTION_DEFAULTS = {"data_dir": "", "verify": "size", "context_length": 32, "min_count": 1}
VERIFY = ("size", "sha256")


def _open(cfg, defaults, kind: str, name: str):
  get = field_reader(cfg, defaults)
  data_dir, verify = get("data_dir") or "", get("verify")
  if verify not in VERIFY:
    raise ConfigError(f"config.data.verify={verify!r} is not known; allowed: {list(VERIFY)}")
  manifest = read_manifest(data_dir)
  if manifest.get("kind") != kind:
    raise ConfigError(f"config.data.data_dir={data_dir!r} holds a {manifest.get('kind')!r} "
                      f"conversion; config.data.name={name!r} reads {kind!r}")
  return get, data_dir, manifest, verify == "sha256"


@DATASETS.register("image_folder_records", defaults=FOLDER_DEFAULTS)
def load_image_folder_records(cfg) -> DataSplits:
  """A converted group-labelled image folder (robustdata/data/convert.py --kind image_folder):
  the same splits, ids, labels, groups and pixels as `waterbirds_folder` at the converted
  image_size, read lazily. Fields: data_dir, verify ('size' | 'sha256' of every shard)."""
  _, data_dir, manifest, full = _open(cfg, FOLDER_DEFAULTS, "image_folder",
                                      "image_folder_records")
  parts = {}
  for split in ("train", "val", "test"):
    if split == "val" and split not in manifest["splits"]:
      parts[split] = None
      continue
    x, meta = open_split(data_dir, manifest, split, full=full,
                         what="config.data.name='image_folder_records'")
    y = np.asarray(meta["label"], np.int32)
    spurious = np.asarray(meta["spurious"], np.int32) if "spurious" in meta else None
    groups = np.asarray(meta["group"], np.int32) if "group" in meta else None
    parts[split] = Dataset(x=x, y=y, ids=np.asarray(meta["id"], np.int64), groups=groups,
                           spurious=spurious)
  if parts["val"] is None:
    parts["val"] = parts["test"].subset(np.arange(0))
  info = dict(manifest.get("info", {}), source="image_folder_records", data_dir=data_dir)
  return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"],
                    num_classes=int(manifest["num_classes"]),
                    num_groups=int(manifest.get("num_groups", 0)),
                    group_names=tuple(manifest.get("group_names", ())), info=info)


@DATASETS.register("caption_records", defaults=CAPTION_DEFAULTS)
def load_caption_records(cfg) -> DataSplits:
  """A converted image-caption table (convert.py --kind caption_table), the `caption_csv`
  source read lazily: tokenizer from the train captions, ids the table rows (train 0, val
  1e9, test 2e9 + row). Fields: data_dir, verify, context_length 32, min_count 1."""
  from robustdata.data.tokenizer import Tokenizer  # pylint: disable=g-import-not-at-top
  get, data_dir, manifest, full = _open(cfg, CAPTION_DEFAULTS, "caption_table", "caption_records")
  opened = {s: open_split(data_dir, manifest, s, full=full,
                          what="config.data.name='caption_records'")
            for s in ("train", "val", "test") if s in manifest["splits"] or s == "train"}
  tokenizer = Tokenizer.build(opened["train"][1]["caption"],
                              context_length=int(get("context_length")),
                              min_count=int(get("min_count")))
  splits = {}
  for s in ("train", "val", "test"):
    if s not in opened:
      shape = tuple(manifest["image_shape"])
      splits[s] = Dataset(x=np.zeros((0, *shape), np.float32), y=np.zeros((0,), np.int32),
                          ids=np.zeros((0,), np.int64),
                          extras={"tokens": np.zeros((0, tokenizer.context_length), np.int32),
                                  "caption": np.zeros((0,), dtype=str),
                                  "image_path": np.zeros((0,), dtype=str)})
      continue
    x, meta = opened[s]
    captions = meta["caption"]
    splits[s] = Dataset(
        x=x, y=np.zeros((len(x),), np.int32), ids=np.asarray(meta["id"], np.int64),
        extras={"tokens": tokenizer.encode_batch(captions),
                "caption": np.asarray(captions, dtype=str),
                "image_path": np.asarray(meta["path"], dtype=str)})
  return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], num_classes=0,
                    info={"tokenizer": tokenizer, "vocab_size": tokenizer.vocab_size,
                          "context_length": tokenizer.context_length, "data_dir": data_dir})
