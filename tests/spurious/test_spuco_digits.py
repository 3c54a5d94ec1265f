"""spuco_digits: exact correlation strength, group counts, masks, noise, bad inputs, MNIST."""

import io
import math

import ml_collections
import numpy as np
import pytest

from robustdata.data import spuco_digits as sd
from robustdata.registry import DATASETS, ConfigError


def _load(**fields):
  return sd.load_spuco_digits(ml_collections.ConfigDict(fields))


def test_train_strength_is_exact_and_groups_complete():
  splits = _load(spurious_correlation_strength=0.9)
  c = splits.num_classes
  assert c == 5 and splits.num_groups == 25 and len(splits.group_names) == 25
  assert splits.group_names[7] == "y=1,bg=2"
  train = splits.train
  for k in range(c):
    colours = train.spurious[train.y == k]
    n = len(colours)
    assert (colours == k).sum() == math.floor(0.9 * n + 1e-9)
    # The rest go round-robin to the other colours: counts differ by at most one.
    others = np.bincount(colours[colours != k], minlength=c)[[o for o in range(c) if o != k]]
    assert others.max() - others.min() <= 1 and others.sum() == n - (colours == k).sum()
  np.testing.assert_array_equal(train.groups, train.y * c + train.spurious)
  for split in (train, splits.val, splits.test):
    assert (np.bincount(split.groups, minlength=25) > 0).all()
    assert split.x.dtype == np.float32 and split.x.shape[1:] == (8, 8, 3)
    assert split.x.min() >= 0.0 and split.x.max() <= 1.0


def test_per_class_strength_val_flag_and_balanced_test():
  strength = [0.9, 0.8, 0.85, 0.7, 0.95]
  splits = _load(spurious_correlation_strength=strength, val_balanced=False)
  for split in (splits.train, splits.val):
    for k, s in enumerate(strength):
      colours = split.spurious[split.y == k]
      assert (colours == k).sum() == math.floor(s * len(colours) + 1e-9)
  for split in (splits.test, _load(val_balanced=True).val):
    for k in range(5):
      counts = np.bincount(split.spurious[split.y == k], minlength=5)
      assert counts.max() - counts.min() <= 1  # i mod C


def test_split_is_deterministic_and_ids_disjoint():
  a, b = _load(seed=3), _load(seed=3)
  np.testing.assert_array_equal(a.train.x, b.train.x)
  np.testing.assert_array_equal(a.test.spurious, b.test.spurious)
  ids = [set(s.ids.tolist()) for s in (a.train, a.val, a.test)]
  assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
  assert sum(map(len, ids)) == 1797


@pytest.mark.parametrize("size,expected", [
    (28, {"small": 2, "medium": 4, "low": 7, "region": 14, "variance_pixels": 49}),
    (8, {"small": 1, "medium": 2, "low": 3, "region": 4, "variance_pixels": 9}),
])
def test_mask_pixel_counts(size, expected):
  assert sd.mask_sizes(size) == expected
  rng = np.random.default_rng(0)
  counts = {d: sd.difficulty_masks(d, 5, size, rng=rng).sum(axis=(1, 2)) for d in sd.DIFFICULTIES}
  full = {"magnitude_large": size * size, "magnitude_medium": expected["medium"] ** 2,
          "magnitude_small": expected["small"] ** 2, "variance_low": expected["low"] ** 2,
          "variance_medium": expected["variance_pixels"],
          "variance_high": expected["variance_pixels"]}
  for d, n in full.items():
    assert (counts[d] == n).all(), d
  region = expected["region"]
  medium = sd.difficulty_masks("variance_medium", 50, size, rng=rng)
  assert not medium[:, region:, :].any() and not medium[:, :, region:].any()
  high = sd.difficulty_masks("variance_high", 50, size, rng=rng)
  assert len({m.tobytes() for m in high}) > 1  # redrawn per image


def test_paint_only_background_inside_mask_with_hsv_colours():
  splits = _load(difficulty="magnitude_small", upsample=2)  # 16x16, small side 1
  x, colours = splits.train.x, splits.train.spurious
  palette = sd.hsv_colors(5)
  corner = x[:, 0, 0]
  blank = corner.max(-1) == corner.min(-1)  # grey (digit or black) pixel
  painted = ~blank
  np.testing.assert_allclose(corner[painted], palette[colours[painted]])
  assert (x[:, 1:, :, :].std(-1) == 0).all() and (x[:, :, 1:, :].std(-1) == 0).all()
  matplotlib = pytest.importorskip("matplotlib")
  ref = np.array([matplotlib.colormaps["hsv"](k / 5)[:3] for k in range(5)])
  np.testing.assert_allclose(palette, ref, atol=1e-6)


def test_label_and_core_feature_noise_counts():
  splits = _load(label_noise=0.1, core_feature_noise=0.2)
  train = splits.train
  n = len(train)
  assert (train.y != train.extras["clean_y"]).sum() == math.floor(0.1 * n + 0.5)  # round(r N)
  assert train.extras["core_noise"].sum() == math.floor(0.2 * n)
  np.testing.assert_array_equal(train.groups, train.y * 5 + train.spurious)
  assert "clean_y" not in splits.test.extras


@pytest.mark.parametrize("fields,field", [
    ({"spurious_correlation_strength": 1.5}, "spurious_correlation_strength"),
    ({"spurious_correlation_strength": [0.9, 0.9]}, "spurious_correlation_strength"),
    ({"spurious_correlation_strength": 0.999}, "spurious_correlation_strength"),  # empty group
    ({"classes": [[0, 1], [1, 2]]}, "classes"),
    ({"classes": [[0, 1], [10]]}, "classes"),
    ({"classes": [[0, 1], []]}, "classes"),
    ({"difficulty": "huge"}, "difficulty"),
    ({"label_noise": -0.1}, "label_noise"),
])
def test_bad_inputs_name_the_field(fields, field):
  with pytest.raises(ConfigError, match=f"config.data.{field}"):
    _load(**fields)


def test_registered():
  assert DATASETS._entries["spuco_digits"] is sd.load_spuco_digits  # pylint: disable=protected-access


def _write_fake_mnist(data_dir, monkeypatch, n_train=240, n_test=80):
  """A tiny MNIST-format tfds dataset (ArrayRecord) written through the real mnist builder."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from PIL import Image

  builder = tfds.builder("mnist", data_dir=str(data_dir), file_format="array_record")

  def examples(n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      img = (rng.random((28, 28)) > 0.7).astype(np.uint8) * 255
      buf = io.BytesIO()
      Image.fromarray(img).save(buf, format="PNG")  # pre-encoded: no TensorFlow needed
      yield i, {"image": buf.getvalue(), "label": i % 10}

  cls = type(builder)
  monkeypatch.setattr(cls, "_split_generators",
                      lambda self, dl: {"train": examples(n_train, 0), "test": examples(n_test, 1)})
  # No checksums to look up (the lookup imports importlib_resources, not installed here). Set
  # by hand: monkeypatch would read the old class property first and trigger that import.
  had_own = "url_infos" in cls.__dict__
  saved = cls.__dict__.get("url_infos")
  cls.url_infos = {}
  try:
    builder.download_and_prepare()
  finally:
    if had_own:
      cls.url_infos = saved
    else:
      del cls.url_infos


def test_mnist_from_tfds_data_dir(tmp_path, monkeypatch):
  _write_fake_mnist(tmp_path, monkeypatch)
  splits = _load(data_dir=str(tmp_path), classes=[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]],
                 spurious_correlation_strength=0.8, val_fraction=0.25,
                 difficulty="variance_low")
  assert splits.train.x.shape[1:] == (28, 28, 3)
  assert len(splits.train) + len(splits.val) == 240 and len(splits.test) == 80
  assert splits.info["source"] == "mnist"
  for split in (splits.train, splits.val):
    for k in range(2):
      colours = split.spurious[split.y == k]
      assert (colours == k).sum() == math.floor(0.8 * len(colours) + 1e-9)
  assert (splits.test.ids >= 240).all()
  assert (np.bincount(splits.test.groups, minlength=4) == 20).all()
