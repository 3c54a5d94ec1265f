"""Components that used to read a whole split, on lazy splits (records.RecordArray): celeb_a_groups
reads by row, the dataset fingerprint streams, the convex-ordering features read in chunks (all
equal to the in-memory results bit for bit), and the attacks and policies that need a whole split
in memory name their config fields above records.MATERIALIZE_LIMIT_BYTES."""

import dataclasses
import hashlib
import importlib
import io

import ml_collections
import numpy as np
import pytest

from robustdata.data import group_folders, records, sources
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.poisoning import clip_data
from robustdata.poisoning.artifact import dataset_fingerprint
from robustdata.registry import ConfigError
from robustdata.selection import ordering_convex
from robustdata.selection.augment_coreset import AugmentCoreset
from tests.conftest import run_python
from tests.data.test_records import _ListSource


def _lazy(a: np.ndarray, name: str = "demo", split: str = "train") -> records.RecordArray:
  return records.RecordArray(_ListSource(list(a)), lambda r: r, shape=a.shape[1:], dtype=a.dtype,
                             what=f"config.data.name={name!r} split {split!r}", threads=2)


def _lazy_split(d: Dataset, name: str = "demo", split: str = "train") -> Dataset:
  return d.replace(x=_lazy(np.asarray(d.x), name, split))


# --- celeb_a_groups ------------------------------------------------------------------------------

def _prepare_celeb_a(tfds, data_dir: str, counts: dict[str, int]) -> None:
  """A tiny tfds celeb_a (JPEG images, random attributes) in `data_dir`, as ArrayRecord."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  builder = tfds.builder("celeb_a", data_dir=data_dir, file_format="array_record")
  features = builder.info.features
  attr_names = sorted(features["attributes"].keys())

  def blank(feature):
    if isinstance(feature, tfds.features.FeaturesDict):
      return {k: blank(feature[k]) for k in feature.keys()}
    return 0

  def examples(n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      buf = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(buf, "JPEG")
      example = {k: blank(features[k]) for k in features.keys()}
      example.update({"image": buf.getvalue(),
                      "attributes": {a: bool(rng.random() < 0.5) for a in attr_names}})
      yield i, example

  cls = type(builder)
  saved_gens = cls.__dict__.get("_split_generators")
  had_urls, saved_urls = "url_infos" in cls.__dict__, cls.__dict__.get("url_infos")
  cls._split_generators = lambda self, dl: {s: examples(n, k) for k, (s, n) in
                                            enumerate(counts.items())}
  cls.url_infos = {}  # no checksum lookup (it imports importlib_resources)
  try:
    builder.download_and_prepare()
  finally:
    cls._split_generators = saved_gens
    if had_urls:
      cls.url_infos = saved_urls
    else:
      del cls.url_infos


def _celeb_a_in_memory(tfds, data_dir, split, size, target, spurious):
  """Every record of a split decoded at once: the images, labels and spurious attributes."""
  source = tfds.data_source("celeb_a", split=split, data_dir=data_dir, download=False)
  recs = source.__getitems__(list(range(len(source))))
  x = np.stack([group_folders.load_image(np.asarray(r["image"]), size) for r in recs])
  y = np.asarray([int(bool(r["attributes"][target])) for r in recs], np.int32)
  s = np.asarray([int(bool(r["attributes"][spurious])) for r in recs], np.int32)
  return x.astype(np.float32), y, s


def check_celeb_a_groups(data_dir: str) -> None:
  """celeb_a_groups on a tiny prepared celeb_a: lazy images equal to the whole split decoded at
  once, bit for bit; labels, groups and ids; max_per_split a lazy view; no whole-split read."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  counts = {"train": 11, "validation": 5, "test": 6}
  _prepare_celeb_a(tfds, data_dir, counts)
  records.MATERIALIZE_LIMIT_BYTES = 0  # loading reads no whole split (a subprocess: no restore)
  target, spurious, size = "Smiling", "Eyeglasses", 12
  full = group_folders.read_celeb_a_groups(data_dir, target=target, spurious=spurious,
                                           image_size=size)
  limited = group_folders.read_celeb_a_groups(data_dir, target=target, spurious=spurious,
                                              image_size=size, max_per_split=4, seed=1)
  offset = 0
  for (name, d), lim, (split, n) in zip(full.splits().items(), limited.splits().values(),
                                        counts.items()):
    x, y, s = _celeb_a_in_memory(tfds, data_dir, split, size, target, spurious)
    assert isinstance(d.x, records.RecordArray) and d.x.shape == x.shape == (n, size, size, 3)
    np.testing.assert_array_equal(d.x[:], x)  # bit for bit, float32
    np.testing.assert_array_equal(d.x[[n - 1, 0, 2, 2]], x[[n - 1, 0, 2, 2]])
    np.testing.assert_array_equal(d.y, y)
    np.testing.assert_array_equal(d.spurious, s)
    np.testing.assert_array_equal(d.groups, 2 * y + s)
    np.testing.assert_array_equal(d.ids, offset + np.arange(n))
    assert (d.y.dtype, d.spurious.dtype, d.groups.dtype, d.ids.dtype) == (
        np.int32, np.int32, np.int32, np.int64)
    rows = lim.ids - offset  # max_per_split: a lazy view of the chosen rows
    assert len(lim) == min(n, 4) and np.all(np.diff(rows) > 0) and rows.max() < n
    np.testing.assert_array_equal(lim.x[:], x[rows])
    np.testing.assert_array_equal(lim.groups, 2 * y[rows] + s[rows])
    with pytest.raises(ConfigError, match=f"config.data.name='celeb_a_groups' split '{name}'"):
      np.asarray(d.x)
    offset += n
  print("celeb_a_groups ok")


def test_celeb_a_groups_reads_rows_lazily_equal_to_the_whole_split(tmp_path):
  """In a subprocess: looking up celeb_a loads tfds's whole dataset registry, after which a test
  in this process could not register its own builder named like a tfds dataset (mnist)."""
  pytest.importorskip("tensorflow_datasets")
  proc = run_python("from tests.data.test_lazy_consumers import check_celeb_a_groups; "
                    f"check_celeb_a_groups({str(tmp_path)!r})", timeout=300)
  assert "celeb_a_groups ok" in proc.stdout


# --- the dataset fingerprint ---------------------------------------------------------------------

def _fingerprint_whole(x, y):
  """The fingerprint computed on the whole arrays at once (the digest artifacts carry)."""
  h = hashlib.sha256()
  for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
    h.update(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def test_dataset_fingerprint_streams_rows_with_the_same_digest(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.random((37, 5, 4, 3)).astype(np.float32)
  y = rng.integers(0, 10, 37).astype(np.int32)
  ref = _fingerprint_whole(x, y)
  assert dataset_fingerprint(x, y) == ref
  xt = np.moveaxis(x, 1, 2)  # not C-contiguous
  assert dataset_fingerprint(xt, y, chunk_bytes=500) == _fingerprint_whole(xt, y) != ref
  lazy = _lazy(x)
  monkeypatch.setattr(records, "MATERIALIZE_LIMIT_BYTES", 0)  # no whole-split read allowed
  for chunk_bytes in (1, 240, 241, 1000, 10**6, 1 << 26):  # 1 row, rows and a bit, all rows
    assert dataset_fingerprint(x, y, chunk_bytes=chunk_bytes) == ref
    assert dataset_fingerprint(lazy, y, chunk_bytes=chunk_bytes) == ref
  assert dataset_fingerprint(lazy.select(np.arange(36)), y[:36]) == _fingerprint_whole(
      x[:36], y[:36])
  changed = x.copy()
  changed[20, 1, 2, 0] += 1e-6
  assert dataset_fingerprint(_lazy(changed), y) != ref
  assert dataset_fingerprint(x[:0], y[:0]) == _fingerprint_whole(x[:0], y[:0])


# --- convex ordering features --------------------------------------------------------------------

def test_ordering_convex_features_read_lazy_rows_in_chunks(monkeypatch):
  train = sources.load_digits({"split_seed": 0}).train
  ref = train.x.reshape(len(train.x), -1).astype(np.float64)
  lazy = _lazy_split(train)
  monkeypatch.setattr(records, "MATERIALIZE_LIMIT_BYTES", 0)
  for chunk_rows in (1, 7, 4096):
    np.testing.assert_array_equal(ordering_convex.flat_features(lazy.x, chunk_rows=chunk_rows),
                                  ref)
  for loss in ordering_convex.LOSSES:
    a, b = ordering_convex.split_problem(lazy, loss), ordering_convex.digits_problem(loss)
    assert (a.name, a.loss, a.l2) == (b.name, b.loss, b.l2)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
  with pytest.raises(ConfigError, match=r"\.reshape is an in-memory array operation"):
    lazy.x.reshape(len(lazy.x), -1)  # what the features no longer call


# --- whole-split consumers: under the limit they materialise, above it they name the fields -----

def _augment_policy(train: Dataset):
  config = ml_collections.ConfigDict({"policy": {"name": "augment_coreset", "fraction": 0.2,
                                                 "selection": "random"},
                                      "data": {"name": "demo"}})
  return AugmentCoreset(config, train, batch_size=16, seed=0, num_classes=3)


def test_augment_coreset_on_a_lazy_split(monkeypatch):
  rng = np.random.default_rng(1)
  n = 40
  mem = Dataset(x=rng.random((n, 6, 6, 1)).astype(np.float32), y=np.arange(n) % 3,
                ids=np.arange(n))
  lazy = _lazy_split(mem.replace(y=mem.y.copy(), ids=mem.ids.copy()))
  ctx = PolicyContext(step=0, epoch=0, state=None, probe=None)
  plans = [_augment_policy(d).plan_epoch(ctx) for d in (mem, lazy)]
  for (ia, wa), (ib, wb) in zip(*plans):
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(wa, wb)
  assert isinstance(lazy.x, np.ndarray) and len(lazy) == len(mem) > n  # the slots were added
  np.testing.assert_array_equal(lazy.x, mem.x)  # the same strongly augmented slot rows
  monkeypatch.setattr(records, "MATERIALIZE_LIMIT_BYTES", 0)
  with pytest.raises(ConfigError, match=r"config.policy.name='augment_coreset'.*"
                     r"config.data.name='demo'.*MATERIALIZE_LIMIT_BYTES"):
    _augment_policy(_lazy_split(Dataset(x=mem.x[:n], y=mem.y[:n], ids=mem.ids[:n])))


def test_poison_train_on_lazy_splits(monkeypatch):
  config = importlib.import_module("configs.clip.shapes").get_config("smoke")
  with config.unlocked():
    config.data.num_train = 64
    config.data.image_size = 12
    config.poison.count = 4
    config.poison.num_targets = 2
    config.poison.patch_size = 3
  data = sources.load(config.data)
  name = config.data.name
  lazy = dataclasses.replace(data, **{s: _lazy_split(getattr(data, s), name, s)
                                      for s in ("train", "val", "test")})
  train_a, rec_a, eval_a = clip_data.poison_train(config, data)
  train_b, rec_b, eval_b = clip_data.poison_train(config, lazy)
  assert rec_a == rec_b and rec_a["poison_count"] == 8
  for k, v in train_a.arrays().items():
    np.testing.assert_array_equal(train_b.arrays()[k], v)
  np.testing.assert_array_equal(eval_b["targeted"]["x"], eval_a["targeted"]["x"])
  np.testing.assert_array_equal(eval_b["backdoor"]["x"], eval_a["backdoor"]["x"])
  monkeypatch.setattr(records, "MATERIALIZE_LIMIT_BYTES", 0)
  with pytest.raises(ConfigError, match=rf"config.poison.kind='both' needs the whole train split"
                     rf".*config.data.name='{name}'.*MATERIALIZE_LIMIT_BYTES"):
    clip_data.poison_train(config, lazy)
  only_test = dataclasses.replace(data, test=lazy.test)
  with config.unlocked():
    config.poison.kind = "backdoor"
  with pytest.raises(ConfigError, match=rf"config.poison.kind='backdoor' needs the whole test "
                     rf"split.*config.data.name='{name}'"):
    clip_data.poison_train(config, only_test)
  with config.unlocked():
    config.poison.kind = "none"
  assert clip_data.poison_train(config, lazy)[0] is lazy.train  # nothing is read
