"""Lazy ArrayRecord sources (robustdata/data/records.py) and the converter (convert.py), on data
the tests write: rows equal the in-memory sources' bit for bit, the converter resumes and runs in
parallel with the serial output, bad inputs are errors naming the problem."""

import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from robustdata.data import caption_csv, convert, group_folders, records, sources
from robustdata.registry import ConfigError


def _write_folder(root, n=60, seed=0):
  """A Waterbirds-style folder: JPEG images of varied sizes, 3 splits, (y, place) groups."""
  os.makedirs(os.path.join(root, "img"), exist_ok=True)
  rng = np.random.default_rng(seed)
  lines = ["img_filename,y,split,place"]
  for i in range(n):
    a = rng.integers(0, 256, (20 + i % 5, 24, 3), dtype=np.uint8)
    Image.fromarray(a).save(os.path.join(root, "img", f"{i}.jpg"))
    lines.append(f"img/{i}.jpg,{i % 2},{[0, 0, 0, 1, 2][i % 5]},{(i // 2) % 2}")
  with open(os.path.join(root, "metadata.csv"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return str(root)


def _write_captions(root, n=20, seed=1, name="train.csv"):
  os.makedirs(os.path.join(root, "img"), exist_ok=True)
  rng = np.random.default_rng(seed)
  rows = ["image,caption"]
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (18, 14, 3), dtype=np.uint8)).save(
        os.path.join(root, "img", f"{name}-{i}.png"))
    rows.append(f"img/{name}-{i}.png,a photo of {['a cat', 'a dog', 'red shapes'][i % 3]} {i}")
  path = os.path.join(root, name)
  with open(path, "w") as f:
    f.write("\n".join(rows) + "\n")
  return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = _write_folder(tmp_path_factory.mktemp("folder"))
  out = str(tmp_path_factory.mktemp("folder_rec"))
  convert.convert("image_folder", root, out, image_size=16, shard_size=7, verbose=False)
  return root, out


def _cfg(**fields):
  return ml_collections.ConfigDict(fields)


class _ListSource:
  """A random-access source over a list (what a tfds data source looks like)."""

  def __init__(self, items):
    self.items = items

  def __len__(self):
    return len(self.items)

  def __getitems__(self, keys):
    return [self.items[k] for k in keys]


def test_record_array_rows_equal_in_memory_rows(folder):
  rng = np.random.default_rng(0)
  mem = rng.random((53, 4, 3, 2)).astype(np.float32)
  lazy = records.RecordArray(_ListSource(list(mem)), lambda r: r, shape=(4, 3, 2), threads=3)
  _, out = folder
  mem_folder = group_folders.read_waterbirds_folder(folder[0], image_size=16).train.x
  lazy_folder = sources.load(_cfg(name="image_folder_records", data_dir=out)).train.x
  for m, x in ((mem, lazy), (mem_folder, lazy_folder)):
    n = len(m)
    assert x.shape == m.shape and x.dtype == m.dtype and len(x) == n and x.ndim == m.ndim
    for _ in range(5):
      idx = rng.integers(-n, n, size=int(rng.integers(0, 40)))  # repeats and negatives
      np.testing.assert_array_equal(x[idx], m[idx])
    idx2 = rng.integers(0, n, size=(3, 5))
    np.testing.assert_array_equal(x[idx2], m[idx2])
    mask = rng.random(n) < 0.4
    np.testing.assert_array_equal(x[mask], m[mask])
    for s in (slice(None), slice(3, 17), slice(None, None, 3), slice(-5, None), slice(9, 2, -2),
              slice(40, 80)):
      np.testing.assert_array_equal(x[s], m[s])
    for i in (0, n - 1, -1, -n, np.int64(5)):
      np.testing.assert_array_equal(x[i], m[i])
    np.testing.assert_array_equal(x[2:9, 1], m[2:9, 1])
    np.testing.assert_array_equal(x[7, :, 0], m[7, :, 0])
    view = x.select(np.arange(n)[::-2]).select([0, 4, 4, 1])  # a view of a view reads nothing
    np.testing.assert_array_equal(view[:], m[::-2][[0, 4, 4, 1]])
    np.testing.assert_array_equal(np.asarray(x), m)
    with pytest.raises(IndexError):
      x[np.asarray([n])]


def test_whole_array_operations_are_bounded(monkeypatch):
  x = records.RecordArray(_ListSource([np.zeros((2,), np.float32)] * 10), lambda r: r, shape=(2,),
                          what="config.data.name='demo' split 'train'")
  assert np.concatenate([np.asarray(x), np.ones((1, 2), np.float32)]).shape == (11, 2)
  monkeypatch.setattr(records, "MATERIALIZE_LIMIT_BYTES", 40)
  with pytest.raises(ConfigError, match="config.data.name='demo'.*whole split"):
    np.asarray(x)
  with pytest.raises(ConfigError, match=r"\.reshape is an in-memory array operation"):
    x.reshape(10, 2)
  with pytest.raises(ConfigError, match=r"\.mean"):
    x.mean()


def test_image_folder_records_equal_the_in_memory_folder(folder):
  root, out = folder
  lazy = sources.load(_cfg(name="image_folder_records", data_dir=out, verify="sha256"))
  mem = sources.load(_cfg(name="waterbirds_folder", data_dir=root, image_size=16))
  assert isinstance(lazy.train.x, records.RecordArray)
  assert (lazy.num_classes, lazy.num_groups, lazy.group_names) == (
      mem.num_classes, mem.num_groups, mem.group_names)
  for name, a in lazy.splits().items():
    b = mem.splits()[name]
    for field in ("y", "ids", "groups", "spurious"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
      assert getattr(a, field).dtype == getattr(b, field).dtype
    np.testing.assert_array_equal(a.x[:], b.x)  # PNG is lossless: the same float32 pixels
    sub = np.asarray([5, 1, 1])
    np.testing.assert_array_equal(a.subset(sub).x[:], b.subset(sub).x)


def _files(out):
  return {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out))}


def test_converter_parallel_equals_serial_and_resumes(folder, tmp_path):
  root, serial = folder
  par = str(tmp_path / "par")
  convert.convert("image_folder", root, par, image_size=16, shard_size=7, workers=2,
                  verbose=False)
  assert _files(par) == _files(serial)  # byte-identical shards, sidecars and manifest
  shard = sorted(f for f in os.listdir(par) if f.endswith(".array_record"))
  shard.remove("train-00001-of-00006.array_record")
  shard.remove("train-00003-of-00006.array_record")
  shard[1:1] = ["train-00001-of-00006.array_record", "train-00003-of-00006.array_record"]
  victim, gone = os.path.join(par, shard[1]), os.path.join(par, shard[3])
  before = {f: os.stat(os.path.join(par, f)).st_mtime_ns for f in shard}
  with open(victim, "r+b") as f:  # a kill mid-write leaves a short file
    f.truncate(os.path.getsize(victim) // 2)
  os.remove(gone)
  with pytest.raises(ConfigError, match=f"shard {shard[1]} has .* bytes"):
    sources.load(_cfg(name="image_folder_records", data_dir=par))
  convert.convert("image_folder", root, par, image_size=16, shard_size=7, verbose=False)
  after = {f: os.stat(os.path.join(par, f)).st_mtime_ns for f in shard}
  assert [f for f in shard if after[f] != before[f]] == [shard[1], shard[3]]  # only those two
  assert _files(par) == _files(serial)
  assert convert.verify(par) == {"train": 36, "val": 12, "test": 12}


def test_bad_inputs_are_errors_naming_the_problem(folder, tmp_path):
  root, good = folder
  # A data_dir without the requested split: at conversion and when reading.
  with pytest.raises(ConfigError, match="no rows of the requested split 'val'"):
    lines = open(os.path.join(root, "metadata.csv")).read().splitlines()
    nov = tmp_path / "noval"
    _write_folder(nov)
    (nov / "metadata.csv").write_text("\n".join(
        [lines[0]] + [ln for ln in lines[1:] if not ln.endswith((",1,0", ",1,1"))]) + "\n")
    convert.convert("image_folder", str(nov), str(tmp_path / "o1"), image_size=8, verbose=False)
  capt = _write_captions(str(tmp_path / "cap"))
  only_val = str(tmp_path / "only_val")
  convert.convert("caption_table", capt, only_val, image_size=8, split="val", verbose=False)
  with pytest.raises(ConfigError, match="has no split 'train'"):
    sources.load(_cfg(name="caption_records", data_dir=only_val))
  with pytest.raises(ConfigError, match="holds a 'caption_table' conversion"):
    sources.load(_cfg(name="image_folder_records", data_dir=only_val))
  with pytest.raises(ConfigError, match="has no manifest.json"):
    sources.load(_cfg(name="image_folder_records", data_dir=str(tmp_path)))

  def copy():
    out = tmp_path / f"copy{len(os.listdir(tmp_path))}"
    out.mkdir()
    for f, data in _files(good).items():
      (out / f).write_bytes(data)
    return str(out)

  # A manifest whose fingerprint does not match its shards.
  bad = copy()
  m = json.load(open(os.path.join(bad, "manifest.json")))
  m["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
  json.dump(m, open(os.path.join(bad, "manifest.json"), "w"))
  with pytest.raises(ConfigError, match="fingerprint .* does not match its shards"):
    sources.load(_cfg(name="image_folder_records", data_dir=bad))
  # A corrupt shard of the right size: sha256 verification and the read itself name it.
  bad = copy()
  shard = os.path.join(bad, "train-00002-of-00006.array_record")
  data = bytearray(open(shard, "rb").read())
  data[200:264] = b"\x5a" * 64  # inside the first chunk (the file is padded to 64 KiB blocks)
  open(shard, "wb").write(bytes(data))
  with pytest.raises(ConfigError, match="train-00002-of-00006.array_record.*corrupt"):
    sources.load(_cfg(name="image_folder_records", data_dir=bad, verify="sha256"))
  with pytest.raises(ConfigError, match="corrupt"):
    convert.verify(bad)
  lazy = sources.load(_cfg(name="image_folder_records", data_dir=bad))  # size check passes
  with pytest.raises(ConfigError, match="cannot read rows .*corrupt"):
    lazy.train.x[np.arange(14, 21)]
  # A CSV row whose image is missing or unreadable: stop (default) or skip and count.
  (tmp_path / "cap" / "img" / "train.csv-3.png").unlink()
  (tmp_path / "cap" / "img" / "train.csv-7.png").write_bytes(b"not an image")
  with pytest.raises(ConfigError, match=r"row 5: image .*train.csv-3.png' is missing.*skip"):
    convert.convert("caption_table", capt, str(tmp_path / "o2"), image_size=8, verbose=False)
  manifest = convert.convert("caption_table", capt, str(tmp_path / "o3"), image_size=8,
                             on_bad_image="skip", verbose=False)
  assert manifest["splits"]["train"]["count"] == 18
  assert manifest["splits"]["train"]["skipped"] == 2
  data = sources.load(_cfg(name="caption_records", data_dir=str(tmp_path / "o3")))
  assert 3 not in data.train.ids and 7 not in data.train.ids and len(data.train) == 18
  with pytest.raises(ConfigError, match="--on_bad_image='ignore' is not known"):
    convert.convert("caption_table", capt, str(tmp_path / "o4"), on_bad_image="ignore")


def test_skipped_rows_are_printed(tmp_path, capsys):
  capt = _write_captions(str(tmp_path / "cap"), n=6)
  (tmp_path / "cap" / "img" / "train.csv-2.png").unlink()
  convert.main(["--kind", "caption_table", "--input", capt, "--output", str(tmp_path / "o"),
                "--image_size", "8", "--on_bad_image", "skip"])
  out = capsys.readouterr().out
  assert "skipped train row 4" in out and "1 rows skipped" in out


def test_caption_records_equal_caption_csv(tmp_path):
  root = str(tmp_path / "cap")
  train, test = _write_captions(root), _write_captions(root, n=7, seed=2, name="test.csv")
  png, jpeg = str(tmp_path / "png"), str(tmp_path / "jpeg")
  for split, path in (("train", train), ("test", test)):
    convert.convert("caption_table", path, png, image_size=12, split=split, verbose=False)
    convert.convert("caption_table", path, jpeg, image_size=12, split=split, encoding="jpeg",
                    verbose=False)
  mem = caption_csv.load_caption_csv(_cfg(train_file=train, test_file=test, image_size=12))
  for out, atol in ((png, 0.0), (jpeg, 0.08)):
    lazy = sources.load(_cfg(name="caption_records", data_dir=out))
    assert lazy.info["tokenizer"].words == mem.info["tokenizer"].words
    for name in ("train", "val", "test"):
      a, b = lazy.splits()[name], mem.splits()[name]
      np.testing.assert_array_equal(a.ids, b.ids)
      for k in ("tokens", "caption", "image_path"):
        np.testing.assert_array_equal(a.extras[k], b.extras[k])
      np.testing.assert_allclose(a.x[:], b.x, rtol=0, atol=atol)
      if atol and len(b.x):  # JPEG at quality 95: close on average, not equal
        assert 0 < np.abs(a.x[:] - b.x).mean() < 0.02


def test_tfds_array_record_dataset_is_read_lazily(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")

  class RdTinyRecordsTest(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    url_infos = {}  # no checksum lookup (it imports importlib_resources)

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(6, 5, 3), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=4)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(30, 0), "test": self._generate_examples(9, 1)}

    def _generate_examples(self, n, seed):
      rng = np.random.default_rng(seed)
      for i in range(n):
        yield i, {"image": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), "label": i % 4}

  RdTinyRecordsTest(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  name = "rd_tiny_records_test"
  splits = sources.tfds_splits(name, str(tmp_path), num_classes=4, val_fraction=0.2,
                               split_seed=3)
  x_train, y_train = sources.read_tfds_split(name, "train", str(tmp_path))  # in memory
  x_test, y_test = sources.read_tfds_split(name, "test", str(tmp_path))
  perm = np.random.default_rng(3).permutation(30)
  val, train = np.sort(perm[:6]), np.sort(perm[6:])
  assert isinstance(splits.train.x, records.RecordArray) and splits.train.x.shape == (24, 6, 5, 3)
  np.testing.assert_array_equal(splits.train.x[:], x_train[train].astype(np.float32) / 255.0)
  np.testing.assert_array_equal(splits.val.x[::-1], x_train[val[::-1]].astype(np.float32) / 255)
  np.testing.assert_array_equal(splits.test.x[[8, 0, 8]], x_test[[8, 0, 8]] / np.float32(255))
  np.testing.assert_array_equal(splits.train.y, y_train[train])
  np.testing.assert_array_equal(splits.test.ids, np.arange(9) + 10**9)
  np.testing.assert_array_equal(splits.test.y, y_test)
  with pytest.raises(ConfigError, match=f"holds no prepared '{name}' split 'validation'"):
    sources.lazy_tfds_split(name, "validation", str(tmp_path))


@pytest.mark.slow
def test_supervised_run_on_records_equals_in_memory(folder, tmp_path, tiny_config, monkeypatch):
  """CRAIG (probes read rows by index) on a CNN: the records source gives bitwise the results of
  the in-memory folder, without ever holding a whole split (materialising is made an error)."""
  from robustdata import runner  # pylint: disable=g-import-not-at-top
  root, out = folder
  results = {}
  for name, data in (("memory", {"name": "waterbirds_folder", "data_dir": root,
                                 "image_size": 16}),
                     ("records", {"name": "image_folder_records", "data_dir": out})):
    c = tiny_config(train__batch_size=12, train__eval_batch_size=16, train__epochs=2)
    c.model.name, c.model.channels, c.model.dense = "cnn", (4, 8), 16
    c.policy.name = "craig"
    c.data.update(data)
    if name == "records":
      monkeypatch.setattr(records, "MATERIALIZE_LIMIT_BYTES", 0)
    _, results[name] = runner.run(c, str(tmp_path / name))
  rows = runner.compare(results["memory"], results["records"])
  differ = [r for r in rows if not r[3] and r[0] not in ("config_hash", "config_name", "dataset")]
  assert not differ, differ
  assert results["records"]["test_accuracy"] == results["memory"]["test_accuracy"]
  assert "worst_group_accuracy" in results["records"]
