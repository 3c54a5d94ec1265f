"""The embedded digits source and the tfds path, on a dataset written in tfds format here."""

import collections

import ml_collections
import numpy as np
import pytest

from robustdata.data import sources
from robustdata.registry import ConfigError
from tests.fake_tfds import write_fake_tfds


def test_digits_split_is_deterministic_and_disjoint():
  cfg = ml_collections.ConfigDict({"name": "digits"})
  a, b = sources.load(cfg), sources.load(cfg)
  assert (len(a.train), len(a.val), len(a.test)) == (1258, 180, 359)
  assert sum(len(s) for s in a.splits().values()) == 1797
  np.testing.assert_array_equal(a.test.ids, b.test.ids)
  ids = [set(s.ids.tolist()) for s in a.splits().values()]
  assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
  assert a.train.x.shape[1:] == (8, 8, 1) and a.train.x.dtype == np.float32
  assert 0.0 <= a.train.x.min() and a.train.x.max() <= 1.0
  assert a.num_classes == 10 and set(np.unique(a.train.y)) == set(range(10))


def test_digits_upsample():
  d = sources.load(ml_collections.ConfigDict({"name": "digits", "upsample": 2}))
  assert d.train.x.shape[1:] == (16, 16, 1)
  np.testing.assert_array_equal(d.train.x[:, ::2, ::2], d.train.x[:, 1::2, 1::2])


def test_digits_train_copies_and_label_noise():
  base = sources.load(ml_collections.ConfigDict({"name": "digits", "upsample": 2}))
  cfg = ml_collections.ConfigDict({"name": "digits", "upsample": 2, "train_copies": 2,
                                   "label_noise": 0.2})
  d, again = sources.load(cfg), sources.load(cfg)
  n = len(base.train)
  assert len(d.train) == 3 * n and len(np.unique(d.train.ids)) == 3 * n
  np.testing.assert_array_equal(d.train.x[:n], base.train.x)        # originals first
  np.testing.assert_array_equal(d.test.x, base.test.x)              # val/test untouched
  np.testing.assert_array_equal(d.train.x, again.train.x)           # part of the dataset
  clean = d.train.extras["clean_y"]
  np.testing.assert_array_equal(clean, np.tile(base.train.y, 3))
  assert np.sum(d.train.y != clean) == int(0.2 * 3 * n + 0.5) == d.info["flipped_labels"]  # round
  # A copy is its original shifted by at most `upsample` pixels, plus small noise.
  copy, orig = d.train.x[n + 5, ..., 0], base.train.x[5, ..., 0]
  best = min(np.abs(np.roll(np.roll(orig, a, 0), b, 1) - copy)[2:-2, 2:-2].mean()
             for a in range(-2, 3) for b in range(-2, 3))
  assert best < 0.08
  for field, value in (("train_copies", -1), ("label_noise", 1.0)):
    with pytest.raises(ConfigError, match=f"config.data.{field}"):
      sources.load(ml_collections.ConfigDict({"name": "digits", field: value}))


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_source_reads_prepared_data_dir(tmp_path, name, shape):
  write_fake_tfds(tmp_path, name, 50, 20, shape, 10)
  cfg = ml_collections.ConfigDict({"name": name, "data_dir": str(tmp_path), "val_fraction": 0.2})
  d = sources.load(cfg)
  assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 20)
  assert d.train.x.shape[1:] == shape and d.train.x.dtype == np.float32
  assert d.num_classes == 10
  # Every (image, label) pair survives exactly (PNG is lossless); tfds shuffles record order.
  rng = np.random.default_rng(1)
  written = {rng.integers(0, 256, shape, dtype=np.uint8).tobytes(): i % 10 for i in range(20)}
  read = {np.round(x * 255).astype(np.uint8).tobytes(): int(y) for x, y in zip(d.test.x, d.test.y)}
  assert read == written


def test_tfds_missing_data_dir_is_a_clear_error(tmp_path):
  cfg = ml_collections.ConfigDict({"name": "cifar10", "data_dir": str(tmp_path / "nowhere")})
  with pytest.raises(ConfigError, match="config.data.data_dir=.*nowhere.* is not a directory"):
    sources.load(cfg)
  cfg = ml_collections.ConfigDict({"name": "svhn_cropped", "data_dir": str(tmp_path)})
  with pytest.raises(ConfigError, match="holds no prepared 'svhn_cropped'"):
    sources.load(cfg)


def test_generated_sources_render_once_per_config_and_hand_out_copies(monkeypatch):
  """A generated source renders once per config.data in a process; every load gets its own
  arrays (changing one in place changes no later load), and another field value renders anew."""
  calls, source = [], sources.DATASETS.get("captioned_shapes")
  monkeypatch.setattr(sources, "_RENDERED", collections.OrderedDict())

  def counting(cfg):
    calls.append(cfg.get("seed", 0))
    return source(cfg)

  monkeypatch.setattr(sources.DATASETS, "get", lambda name: counting)
  cfg = ml_collections.ConfigDict({"name": "captioned_shapes", "num_train": 64, "num_val": 8,
                                   "num_test": 16, "num_downstream_train": 8,
                                   "num_downstream_test": 8})
  first = sources.load(cfg)
  first.train.x[:] = 0.0
  second = sources.load(cfg)
  assert len(calls) == 1
  fresh = source(cfg)
  np.testing.assert_array_equal(second.train.x, fresh.train.x)
  np.testing.assert_array_equal(second.train.extras["tokens"], fresh.train.extras["tokens"])
  assert second.train.x is not first.train.x and second.train.x.max() > 0
  other = ml_collections.ConfigDict({**cfg.to_dict(), "seed": 1})
  assert not np.array_equal(sources.load(other).train.x, fresh.train.x)
  assert len(calls) == 2
  # The loader's fields (augmentation) are not the source's: the same rendering serves them.
  augmented = ml_collections.ConfigDict({**cfg.to_dict(), "augment": ("crop", "flip"),
                                         "crop_padding": 2})
  np.testing.assert_array_equal(sources.load(augmented).train.x, fresh.train.x)
  assert len(calls) == 2
