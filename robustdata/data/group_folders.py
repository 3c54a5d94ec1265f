"""Group-annotated real datasets read from local files (never downloaded).

- `waterbirds_folder`: the Waterbirds release layout (Sagawa et al.; also WILDS and SpuCo's
  wrapper): a folder with `metadata.csv` (columns img_filename, y, split, place; split 0/1/2 =
  train/val/test) and the images at the relative paths it names. Group = y * 2 + place.
- `celeb_a_groups`: tfds `celeb_a` from a prepared `data_dir`, target attribute `Blond_Hair`
  and spurious attribute `Male` by default, images read lazily by row (robustdata/data/
  records.py). Group = y * 2 + spurious.
Images are resized (shorter side) to `image_size` and centre-cropped, NHWC float32 in [0, 1].
"""

from __future__ import annotations

import csv
import functools
import io
import os
from typing import Iterable

import numpy as np

from robustdata.data import records
from robustdata.data.dataset import DataSplits, Dataset
from robustdata.registry import DATASETS, ConfigError, field_reader

WATERBIRDS_SPLITS = {"train": 0, "val": 1, "test": 2}
WATERBIRDS_GROUP_NAMES = ("y=0,place=0", "y=0,place=1", "y=1,place=0", "y=1,place=1")
WATERBIRDS_INFO = {"classes": ["landbird", "waterbird"], "places": ["land", "water"]}
CELEB_A_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def load_image(source, image_size: int) -> np.ndarray:
  """An image (path, bytes, PIL image or uint8 array) as (S, S, 3) float32 in [0, 1]: shorter
  side resized to S (bilinear), then centre-cropped."""
  return load_image_uint8(source, image_size).astype(np.float32) / 255.0


def load_image_uint8(source, image_size: int) -> np.ndarray:
  """`load_image` before the scaling: (S, S, 3) uint8 (what the converter encodes losslessly
  as PNG, so a converted folder decodes to the same pixels)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if isinstance(source, np.ndarray):
    img = Image.fromarray(source.squeeze() if source.shape[-1] == 1 else source)
  elif isinstance(source, (bytes, bytearray)):
    img = Image.open(io.BytesIO(source))
  elif isinstance(source, Image.Image):
    img = source
  else:
    img = Image.open(source)
  img = img.convert("RGB")
  w, h = img.size
  scale = image_size / min(w, h)
  new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
  img = img.resize((new_w, new_h), Image.BILINEAR)
  left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
  img = img.crop((left, top, left + image_size, top + image_size))
  return np.asarray(img, dtype=np.uint8)


def _int_column(rows: list[dict], column: str, allowed, path: str) -> np.ndarray:
  """Column `column` of the metadata rows as ints (each in `allowed` unless None); a bad
  value is a ConfigError naming the file, the row (1-based, header = 1) and the column."""
  out = np.empty(len(rows), np.int64)
  for i, row in enumerate(rows):
    text = row.get(column)
    try:
      out[i] = int(text)
    except (TypeError, ValueError):
      raise ConfigError(f"{path} row {i + 2}: {column}={text!r} is not an integer") from None
    if allowed is not None and out[i] not in allowed:
      raise ConfigError(f"{path} row {i + 2}: {column}={out[i]} is not allowed; allowed values: "
                        f"{list(allowed)}")
  return out


def _load_named_image(path: str, image_size: int, where: str) -> np.ndarray:
  """`load_image` of a file; a file PIL cannot read is a ConfigError naming it."""
  try:
    return load_image(path, image_size)
  except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
    raise ConfigError(f"{where}: {path!r} is not a readable image ({type(e).__name__})") from None


def _limit(indices: np.ndarray, max_per_split: int, seed: int, split: str) -> np.ndarray:
  """At most max_per_split indices (a seeded random subset, kept in order); 0 keeps all."""
  if max_per_split <= 0 or len(indices) <= max_per_split:
    return indices
  rng = np.random.default_rng([seed, sorted(WATERBIRDS_SPLITS).index(split)])
  return np.sort(rng.choice(indices, size=max_per_split, replace=False))


def _stack(images: Iterable[np.ndarray], image_size: int) -> np.ndarray:
  """Decoded images as one (N, S, S, 3) float32 array (an empty split: zero rows)."""
  images = list(images)
  if not images:
    return np.zeros((0, image_size, image_size, 3), np.float32)
  return np.stack(images).astype(np.float32)


def _group_dataset(x, y: np.ndarray, spurious: np.ndarray, ids: np.ndarray) -> Dataset:
  """A split with group = y * 2 + spurious; `x` in memory or a lazy `RecordArray`."""
  y = np.asarray(y, np.int32)
  spurious = np.asarray(spurious, np.int32)
  return Dataset(x=x, y=y, ids=np.asarray(ids, np.int64),
                 groups=(y * 2 + spurious).astype(np.int32), spurious=spurious)


def read_waterbirds_metadata(root: str, metadata: str = "metadata.csv"
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
  """(y, place, split code, ids, rows) of a Waterbirds-style folder's metadata, checked."""
  path = os.path.join(root, metadata)
  if not os.path.isfile(path):
    raise ConfigError(f"config.data.data_dir={root!r} has no {metadata} (Waterbirds layout: "
                      "img_filename, y, split, place columns)")
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise ConfigError(f"config.data.data_dir={root!r}: {path} is not a readable CSV "
                      f"({type(e).__name__}: {e})") from None
  needed = {"img_filename", "y", "split", "place"}
  if not rows or not needed <= set(rows[0]):
    raise ConfigError(f"config.data.data_dir={root!r}: {metadata} needs columns {sorted(needed)}")
  y = _int_column(rows, "y", (0, 1), path)
  place = _int_column(rows, "place", (0, 1), path)
  split = _int_column(rows, "split", tuple(WATERBIRDS_SPLITS.values()), path)
  ids = (_int_column(rows, "img_id", None, path) if "img_id" in rows[0]
         else np.arange(len(rows)))
  return y, place, split, ids, rows


def read_waterbirds_folder(root: str, *, image_size: int = 64, metadata: str = "metadata.csv",
                           max_per_split: int = 0, seed: int = 0) -> DataSplits:
  """The Waterbirds-style folder at `root` as DataSplits with 4 (y, place) groups."""
  y, place, split, ids, rows = read_waterbirds_metadata(root, metadata)
  parts = {}
  for name, code in WATERBIRDS_SPLITS.items():
    idx = _limit(np.flatnonzero(split == code), max_per_split, seed, name)
    if name in ("train", "test") and not len(idx):
      raise ConfigError(f"config.data.data_dir={root!r}: {metadata} has no {name} rows "
                        f"(split={code}); the {name} split must not be empty")
    files = [(i, os.path.join(root, rows[i]["img_filename"])) for i in idx]
    for i, file in files:
      if not os.path.isfile(file):
        raise ConfigError(f"config.data.data_dir={root!r}: {metadata} row {i + 2} names image "
                          f"{file!r}, which does not exist")
    images = (_load_named_image(file, image_size, f"{metadata} row {i + 2}") for i, file in files)
    parts[name] = _group_dataset(_stack(images, image_size), y[idx], place[idx], ids[idx])
  return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"], num_classes=2,
                    num_groups=4, group_names=WATERBIRDS_GROUP_NAMES,
                    info={"source": "waterbirds_folder", "root": root, **WATERBIRDS_INFO})


WATERBIRDS_DEFAULTS = {"data_dir": "", "image_size": 64, "metadata": "metadata.csv",
                       "max_per_split": 0, "seed": 0}


@DATASETS.register("waterbirds_folder", defaults=WATERBIRDS_DEFAULTS)
def load_waterbirds_folder(cfg) -> DataSplits:
  """Fields: data_dir (the folder), image_size 64, metadata 'metadata.csv', max_per_split 0
  (all), seed 0 (which examples `max_per_split` keeps)."""
  get = field_reader(cfg, WATERBIRDS_DEFAULTS)
  data_dir = get("data_dir") or ""
  if not data_dir or not os.path.isdir(data_dir):
    raise ConfigError(f"config.data.data_dir={data_dir!r} is not a directory")
  return read_waterbirds_folder(
      data_dir, image_size=int(get("image_size")), metadata=get("metadata"),
      max_per_split=int(get("max_per_split")), seed=int(get("seed")))


def _celeb_a_source(data_dir: str, tfds_split: str, **kwargs):
  """The random-access `tfds.data_source` of a prepared celeb_a split (ArrayRecord)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source("celeb_a", split=tfds_split, data_dir=data_dir, download=False,
                            **kwargs)
  except Exception as e:  # tfds raises several types for a missing or unprepared dataset
    raise ConfigError(
        f"config.data.data_dir={data_dir!r} holds no prepared 'celeb_a' split '{tfds_split}' "
        f"readable as ArrayRecord ({type(e).__name__}); robustdata never downloads") from None


def decode_celeb_a(record, *, image_size: int) -> np.ndarray:
  """A celeb_a record's image as `load_image` gives it: (S, S, 3) float32 in [0, 1]."""
  return load_image(np.asarray(record["image"]), image_size)


def read_celeb_a_groups(data_dir: str, *, target: str = "Blond_Hair", spurious: str = "Male",
                        image_size: int = 64, max_per_split: int = 0, seed: int = 0,
                        chunk: int = 1024) -> DataSplits:
  """tfds celeb_a (ArrayRecord) with y = `target` attribute and the `spurious` attribute: the
  attributes are read in one pass that skips image decoding; images are decoded by row on
  demand (records.RecordArray), never the whole split."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  parts = {}
  offset = 0
  for name, tfds_split in CELEB_A_SPLITS.items():
    source = _celeb_a_source(data_dir, tfds_split)
    labels = _celeb_a_source(data_dir, tfds_split,
                             decoders={"image": tfds.decode.SkipDecoding()})
    idx = _limit(np.arange(len(source)), max_per_split, seed, name)
    ys, spur = np.zeros(len(idx), np.int32), np.zeros(len(idx), np.int32)
    for start in range(0, len(idx), chunk):
      part = labels.__getitems__([int(i) for i in idx[start:start + chunk]])
      for j, record in enumerate(part, start):
        attributes = record["attributes"]
        for field, attr in (("target", target), ("spurious", spurious)):
          if attr not in attributes:
            raise ConfigError(f"config.data.{field}={attr!r} is not a celeb_a attribute; "
                              f"allowed: {sorted(attributes)}")
        ys[j], spur[j] = int(bool(attributes[target])), int(bool(attributes[spurious]))
    if name in ("train", "test") and not len(idx):
      raise ConfigError(f"config.data.data_dir={data_dir!r}: the celeb_a split '{tfds_split}' "
                        "is empty; the train and test splits must hold examples")
    x = records.RecordArray(source, functools.partial(decode_celeb_a, image_size=image_size),
                            shape=(image_size, image_size, 3),
                            what=f"config.data.name='celeb_a_groups' split {name!r}")
    if len(idx) < len(source):
      x = x.select(idx)
    parts[name] = _group_dataset(x, ys, spur, offset + idx)
    offset += len(source)
  names = tuple(f"{target}={g // 2},{spurious}={g % 2}" for g in range(4))
  return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"], num_classes=2,
                    num_groups=4, group_names=names,
                    info={"source": "celeb_a", "target": target, "spurious": spurious})


CELEB_A_DEFAULTS = {"data_dir": "", "target": "Blond_Hair", "spurious": "Male",
                    "image_size": 64, "max_per_split": 0, "seed": 0}


@DATASETS.register("celeb_a_groups", defaults=CELEB_A_DEFAULTS)
def load_celeb_a_groups(cfg) -> DataSplits:
  """Fields: data_dir (a prepared tfds dir), target 'Blond_Hair', spurious 'Male',
  image_size 64, max_per_split 0 (all), seed 0."""
  get = field_reader(cfg, CELEB_A_DEFAULTS)
  data_dir = get("data_dir") or ""
  if not data_dir or not os.path.isdir(data_dir):
    raise ConfigError(f"config.data.data_dir={data_dir!r} is not a directory; celeb_a is read "
                      "from a prepared local tfds data_dir (robustdata never downloads)")
  return read_celeb_a_groups(
      data_dir, target=get("target"), spurious=get("spurious"), image_size=int(get("image_size")),
      max_per_split=int(get("max_per_split")), seed=int(get("seed")))
