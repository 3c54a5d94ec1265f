"""The dataset sources, registered by `config.data.name`. None of them downloads.

- `digits`: scikit-learn's 1,797 real 8x8 handwritten digits (shipped inside scikit-learn),
  with a deterministic train/val/test split and optional integer upsampling.
- `mnist`, `cifar10`, `cifar100`, `svhn_cropped`: tensorflow-datasets read from a prepared local
  `config.data.data_dir` through `tfds.data_source` (ArrayRecord; no TensorFlow needed), images
  decoded by row on demand, never the whole split (robustdata/data/records.py).
- `image_folder_records`, `caption_records`: the converter's ArrayRecord output (records.py).
Other families register their sources from their own modules (see registry.PLUGIN_MODULES).
"""

from __future__ import annotations

import collections
import copy
import json
import os

import numpy as np

from robustdata import config_lib
from robustdata.data import embedded, label_noise
from robustdata.data import records  # registers image_folder_records, caption_records
from robustdata.data.dataset import DataSplits, Dataset, split_indices
from robustdata.registry import DATASETS, ConfigError, field_reader


# The config.data fields the digits and tfds sources read, with their defaults (all are in the
# base config too).
DIGITS_DEFAULTS = {"val_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0, "upsample": 1,
                   "train_copies": 0, "label_noise": 0.0}
TFDS_DEFAULTS = {"data_dir": "", "val_fraction": 0.1, "split_seed": 0}


def _split_fractions(cfg) -> tuple[float, float, float]:
  get = field_reader(cfg, DIGITS_DEFAULTS)
  val, test = float(get("val_fraction")), float(get("test_fraction"))
  if not 0.0 <= val < 1.0 or not 0.0 < test < 1.0 or val + test >= 1.0:
    raise ConfigError(f"config.data.val_fraction={val} and config.data.test_fraction={test} "
                      "must be in [0, 1) and (0, 1) with a sum below 1")
  return (1.0 - val - test, val, test)


def _jittered_copies(x: np.ndarray, copies: int, shift: int, rng: np.random.Generator
                     ) -> np.ndarray:
  """`copies` versions of every image, each moved by a random integer offset in
  [-shift, shift]^2 (zero fill) and given Gaussian pixel noise of std 0.05, clipped to [0, 1]."""
  out = []
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
  for _ in range(copies):
    dy, dx = rng.integers(-shift, shift + 1, size=(2, len(x)))
    moved = np.stack([padded[i, shift + a:shift + a + h, shift + b:shift + b + w]
                      for i, (a, b) in enumerate(zip(dy, dx))])
    out.append(np.clip(moved + rng.normal(0.0, 0.05, moved.shape).astype(np.float32), 0.0, 1.0))
  return np.concatenate(out)


@DATASETS.register("digits", defaults=DIGITS_DEFAULTS)
def load_digits(cfg) -> DataSplits:
  """scikit-learn's 8x8 digits as (N, 8u, 8u, 1) float32 in [0, 1], u = config.data.upsample.

  A larger, harder train split for the data-efficiency experiments: `train_copies` = K adds K
  randomly shifted (by up to u pixels) and noised copies of every train image (ids after the
  originals'; val/test untouched), and `label_noise` = f flips floor(f N) random train labels
  (originals and copies alike; `label_noise_kind` as in robustdata/data/label_noise.py); the
  true labels stay in `extras['clean_y']`, the flipped rows in `extras['label_flipped']`. A
  `subset_size` below 1 keeps that fraction of the original train images before the copies and
  the noise. All are drawn from `split_seed`, so they are part of the dataset.
  """
  raw = embedded.sklearn_digits()
  x = (raw.images.astype(np.float32) / 16.0)[..., None]
  get = field_reader(cfg, DIGITS_DEFAULTS)
  upsample = int(get("upsample"))
  if upsample < 1:
    raise ConfigError(f"config.data.upsample={upsample} must be an integer >= 1")
  copies = get("train_copies")
  if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 0:
    raise ConfigError(f"config.data.train_copies={copies!r} must be an integer >= 0")
  spec = label_noise.read_spec(cfg)
  noise = spec.rate
  if upsample > 1:
    x = np.repeat(np.repeat(x, upsample, axis=1), upsample, axis=2)
  y = raw.target.astype(np.int32)
  ids = np.arange(len(y), dtype=np.int64)
  split_seed = int(get("split_seed"))
  train, val, test = split_indices(len(y), _split_fractions(cfg), split_seed)
  full = Dataset(x=x, y=y, ids=ids)
  train_set = full.subset(train)
  info = {"source": "sklearn.datasets.load_digits"}
  if spec.subset_size < 1.0:
    train_set = train_set.subset(label_noise.subset_rows(
        len(train_set), spec.subset_size,
        np.random.default_rng([split_seed, label_noise.SUBSET_STREAM])))
    info["subset_size"] = spec.subset_size
  if copies or noise:
    rng = np.random.default_rng([split_seed, 1_797])
    tx, ty = train_set.x, train_set.y
    if copies:
      tx = np.concatenate([tx, _jittered_copies(tx, copies, upsample, rng)])
      ty = np.tile(ty, copies + 1)
    extra_ids = len(y) + np.arange(len(ty) - len(train_set.y), dtype=np.int64)
    train_set = Dataset(x=tx, y=ty, ids=np.concatenate([train_set.ids, extra_ids]),
                        extras={"clean_y": ty.copy()})
    info.update(train_copies=int(copies), label_noise=noise, flipped_labels=0)
    if noise:  # the shared kernel on the same stream, after the copies' draws
      train_set, noise_info = label_noise.noisy_train(train_set, 10, spec, rng)
      info.update(noise_info)
  return DataSplits(train=train_set, val=full.subset(val), test=full.subset(test),
                    num_classes=10, info=info)


# name -> (number of classes, label feature)
TFDS_DATASETS = {
    "mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "svhn_cropped": 10,
}


def tfds_split_source(name: str, split: str, data_dir: str, **kwargs):
  """The random-access `tfds.data_source` of a prepared split (ArrayRecord); a ConfigError
  naming data_dir, dataset and split when there is none."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)
  except Exception as e:  # tfds raises several types for a missing or unprepared dataset
    raise ConfigError(
        f"config.data.data_dir={data_dir!r} holds no prepared '{name}' split '{split}' "
        f"readable as ArrayRecord ({type(e).__name__}: {str(e).splitlines()[0]}). Prepare it "
        f"with `tfds build {name} --data_dir=... --file_format=array_record` on a machine with "
        "internet; robustdata never downloads.") from None


def read_tfds_split(name: str, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """All (image, label) pairs of a prepared tfds split as uint8 NHWC and int32 arrays."""
  source = tfds_split_source(name, split, data_dir)
  records = source.__getitems__(list(range(len(source))))
  images = np.stack([r["image"] for r in records]).astype(np.uint8)
  labels = np.asarray([r["label"] for r in records], dtype=np.int32)
  return images, labels


def lazy_tfds_split(name: str, split: str, data_dir: str, *, chunk: int = 4096
                    ) -> tuple[records.RecordArray, np.ndarray]:
  """(images as a lazy float32 array in [0, 1], int32 labels) of a prepared tfds split: the
  labels are read in one pass that skips image decoding; images are decoded by row on demand
  (the values `read_tfds_split` gives, / 255)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds_split_source(name, split, data_dir)
  skip = tfds_split_source(name, split, data_dir,
                           decoders={"image": tfds.decode.SkipDecoding()})
  labels = np.zeros((len(skip),), np.int32)
  for a in range(0, len(skip), chunk):
    part = skip.__getitems__(list(range(a, min(a + chunk, len(skip)))))
    labels[a:a + len(part)] = [r["label"] for r in part]
  decode = lambda r: np.asarray(r["image"], np.uint8).astype(np.float32) / 255.0
  shape = decode(source[0]).shape if len(source) else (0,)
  x = records.RecordArray(source, decode, shape=shape,
                          what=f"tfds '{name}' split '{split}' in config.data.data_dir="
                          f"{data_dir!r}")
  return x, labels


def _load_tfds(name: str, cfg) -> DataSplits:
  get = field_reader(cfg, TFDS_DEFAULTS)
  data_dir = get("data_dir")
  if not data_dir or not os.path.isdir(data_dir):
    raise ConfigError(
        f"config.data.data_dir={data_dir!r} is not a directory; dataset '{name}' is read from a "
        "prepared local tfds data_dir (robustdata never downloads)")
  return tfds_splits(name, data_dir, num_classes=TFDS_DATASETS.get(name, 0),
                     val_fraction=float(get("val_fraction")), split_seed=int(get("split_seed")))


def tfds_splits(name: str, data_dir: str, *, num_classes: int, val_fraction: float,
                split_seed: int) -> DataSplits:
  """A prepared tfds dataset's train/test splits (val: a seeded `val_fraction` of train), read
  lazily by row from its ArrayRecord files; `num_classes` 0 reads it from the labels."""
  x_train, y_train = lazy_tfds_split(name, "train", data_dir)
  x_test, y_test = lazy_tfds_split(name, "test", data_dir)
  if not 0.0 <= val_fraction < 1.0:
    raise ConfigError(f"config.data.val_fraction={val_fraction} must be in [0, 1)")
  perm = np.random.default_rng(split_seed).permutation(len(y_train))
  n_val = int(round(val_fraction * len(y_train)))
  full = Dataset(x=x_train, y=y_train, ids=np.arange(len(y_train), dtype=np.int64))
  test = Dataset(x=x_test, y=y_test,
                 ids=np.arange(len(y_test), dtype=np.int64) + 10**9)  # test ids never collide
  num_classes = num_classes or int(max(y_train.max(initial=0), y_test.max(initial=0)) + 1)
  return DataSplits(train=full.subset(np.sort(perm[n_val:])), val=full.subset(np.sort(perm[:n_val])),
                    test=test, num_classes=num_classes,
                    info={"source": f"tfds:{name}", "data_dir": data_dir})


for _name in TFDS_DATASETS:
  DATASETS.register(_name, defaults=TFDS_DEFAULTS)(lambda cfg, _name=_name: _load_tfds(_name, cfg))


# Sources generated in the process from a seed (no files): a function of their config.data
# fields, and slow enough to render (one busy core: captioned_scenes 5 s, captioned_shapes
# 0.8 s) that the stages of a chain run in one process (substitute, crafting, victim) should
# render them once. The cache holds one more copy of each split it keeps, in host memory.
GENERATED = frozenset({"captioned_shapes", "captioned_scenes", "cifar_shaped_synthetic",
                       "spuco_digits", "pde_synthetic"})
_RENDERED: collections.OrderedDict[str, DataSplits] = collections.OrderedDict()
RENDERED_ENTRIES = 2  # the most recently used configs kept
RENDERED_BYTES = 512 * 2**20  # larger splits are rendered again when asked for again
# config.data fields the loader reads, not the sources: left out of the cache key, so a
# substitute trained without augmentation and a victim with it share one rendering.
LOADER_FIELDS = ("augment", "crop_padding")


def _nbytes(data: DataSplits) -> int:
  return sum(a.nbytes for split in data.splits().values() for a in split.arrays().values()
             if isinstance(a, np.ndarray))


def _generated(source, cfg) -> DataSplits:
  """`source(cfg)` through a small per-process cache keyed by `cfg`'s fields but LOADER_FIELDS.
  Every call returns its own deep copy, so a caller that changes its arrays in place (poisons
  applied, a policy rewriting the train split) never changes what the next caller gets."""
  fields = {k: v for k, v in config_lib.to_dict(cfg).items() if k not in LOADER_FIELDS}
  key = json.dumps(fields, sort_keys=True)
  if key not in _RENDERED:
    data = source(cfg)
    if _nbytes(data) > RENDERED_BYTES:
      return data
    _RENDERED[key] = data
    while len(_RENDERED) > RENDERED_ENTRIES:
      _RENDERED.popitem(last=False)
  _RENDERED.move_to_end(key)
  return copy.deepcopy(_RENDERED[key])


def load(cfg) -> DataSplits:
  """The splits named by `cfg.name` (a `config.data` section), with its label noise and
  subset_size applied to the train split (robustdata/data/label_noise.py). A file a source
  cannot find or read, or an empty train split, is a ConfigError naming the dataset (and the
  file). The GENERATED sources are rendered once per process for a given config.data."""
  source = DATASETS.get(cfg.name)
  try:
    data = _generated(source, cfg) if cfg.name in GENERATED else source(cfg)
  except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
    raise ConfigError(f"config.data.name={cfg.name!r}: cannot read {e.filename!r} "
                      f"({e.strerror or type(e).__name__}); check config.data") from None
  if len(data.train) == 0:
    raise ConfigError(f"config.data.name={cfg.name!r} gave an empty train split; check "
                      "config.data (its files, sizes and fractions)")
  if "label_noise" not in DATASETS.defaults(cfg.name):  # else the source applied it itself
    data = label_noise.corrupt_train(data, cfg)
  return data
