"""waterbirds_folder and celeb_a_groups readers on data the test writes."""

import csv
import io
import os

import ml_collections
import numpy as np
import pytest

from robustdata.data import group_folders as gf
from robustdata.registry import ConfigError

Image = pytest.importorskip("PIL.Image")


def _write_waterbirds(root, rng):
  rows = []
  for i in range(24):
    y, place, split = i % 2, (i // 2) % 2, (i // 4) % 3
    name = f"{y:03d}.bird/img_{i}.jpg"
    os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    size = (40 + 4 * (i % 3), 30)  # non-square: resized and centre-cropped
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        os.path.join(root, name))
    rows.append({"img_id": 100 + i, "img_filename": name, "y": y, "split": split,
                 "place": place, "place_filename": "x"})
  with open(os.path.join(root, "metadata.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return rows


def test_waterbirds_folder(tmp_path):
  rows = _write_waterbirds(str(tmp_path), np.random.default_rng(0))
  splits = gf.load_waterbirds_folder(ml_collections.ConfigDict(
      {"data_dir": str(tmp_path), "image_size": 16}))
  assert splits.num_groups == 4 and splits.num_classes == 2
  for name, code in gf.WATERBIRDS_SPLITS.items():
    split = getattr(splits, name)
    expected = [r for r in rows if r["split"] == code]
    assert len(split) == len(expected) == 8
    np.testing.assert_array_equal(split.ids, [r["img_id"] for r in expected])
    np.testing.assert_array_equal(split.groups, [r["y"] * 2 + r["place"] for r in expected])
    assert split.x.shape == (8, 16, 16, 3) and split.x.dtype == np.float32
    assert 0.0 <= split.x.min() and split.x.max() <= 1.0
  limited = gf.load_waterbirds_folder(ml_collections.ConfigDict(
      {"data_dir": str(tmp_path), "image_size": 8, "max_per_split": 3}))
  assert len(limited.train) == 3


def test_waterbirds_bad_inputs(tmp_path):
  with pytest.raises(ConfigError, match="config.data.data_dir"):
    gf.load_waterbirds_folder(ml_collections.ConfigDict({"data_dir": str(tmp_path / "none")}))
  with pytest.raises(ConfigError, match="metadata.csv"):
    gf.load_waterbirds_folder(ml_collections.ConfigDict({"data_dir": str(tmp_path)}))


def test_celeb_a_groups_from_tfds_data_dir(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  builder = tfds.builder("celeb_a", data_dir=str(tmp_path), file_format="array_record")
  features = builder.info.features
  attr_names = sorted(features["attributes"].keys())
  landmark_names = sorted(features["landmarks"].keys())

  def zeros(feature):
    if isinstance(feature, tfds.features.FeaturesDict):
      return {k: zeros(feature[k]) for k in feature.keys()}
    return 0

  def examples(n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      buf = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(buf, "JPEG")
      attrs = {a: bool(rng.random() < 0.5) for a in attr_names}
      attrs["Blond_Hair"], attrs["Male"] = bool(i % 2), bool((i // 2) % 2)
      example = {k: zeros(features[k]) for k in features.keys()}  # e.g. `identity`
      example.update({"image": buf.getvalue(), "landmarks": {k: 0 for k in landmark_names},
                      "attributes": attrs})
      yield i, example

  cls = type(builder)
  saved_gens = cls.__dict__.get("_split_generators")
  had_urls, saved_urls = "url_infos" in cls.__dict__, cls.__dict__.get("url_infos")
  cls._split_generators = lambda self, dl: {"train": examples(12, 0),
                                            "validation": examples(8, 1),
                                            "test": examples(8, 2)}
  cls.url_infos = {}  # no checksum lookup (it imports importlib_resources)
  try:
    builder.download_and_prepare()
  finally:
    cls._split_generators = saved_gens
    if had_urls:
      cls.url_infos = saved_urls
    else:
      del cls.url_infos
  splits = gf.load_celeb_a_groups(ml_collections.ConfigDict(
      {"data_dir": str(tmp_path), "image_size": 16}))
  assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 8, 8)
  assert splits.train.x.shape == (12, 16, 16, 3)
  np.testing.assert_array_equal(np.bincount(splits.train.groups, minlength=4), [3, 3, 3, 3])
  assert splits.group_names[3] == "Blond_Hair=1,Male=1"
  with pytest.raises(ConfigError, match="config.data.target"):
    gf.read_celeb_a_groups(str(tmp_path), target="Purple_Hair", image_size=8)
