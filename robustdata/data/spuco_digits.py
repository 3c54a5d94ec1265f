"""SpuCoMNIST's construction (SpuCo, spec §5) on scikit-learn's 8x8 digits, or on MNIST.

Digits are grouped into classes (e.g. [[0, 1], [2, 3], ...]); each class k owns a background
colour (the HSV colormap at k/C). In train (and in val unless `val_balanced`) exactly
floor(strength_c * n_c) examples of class c get their own class colour and the rest the other
classes' colours round-robin; val (when balanced) and test get colours i mod C. The colour is
painted only where the digit pixel is 0 and only inside a difficulty mask. Group = class*C + colour.

Difficulty masks. SpuCo defines them on 28x28 MNIST; for an S x S image the sides scale by S/28
(rounded) and are kept strictly increasing so the six levels stay distinct on small images:
  small side   s1 = max(1, round(2S/28))          (28: 2x2)
  medium side  s2 = max(s1 + 1, round(4S/28))     (28: 4x4)
  low-var side s3 = max(s2 + 1, round(7S/28))     (28: 7x7, 49 px)
  region       r  = max(s3 + 1, round(14S/28))    (28: 14x14)
magnitude_large paints the whole image, magnitude_medium / magnitude_small the top-left s2 / s1
square, variance_low the top-left s3 square, variance_medium s3^2 random pixels inside the
top-left r x r region, variance_high s3^2 random pixels anywhere (both redrawn per image).
For 8x8 digits: s1=1, s2=2, s3=3 (9 px), r=4; at 28 this is exactly SpuCo's masks.
"""

from __future__ import annotations

import math
import os
from typing import Sequence, Union

import numpy as np

from robustdata.data import embedded
from robustdata.data import label_noise as noise_lib
from robustdata.data.dataset import DataSplits, Dataset, split_indices
from robustdata.registry import DATASETS, ConfigError, field_reader

DIFFICULTIES = ("magnitude_large", "magnitude_medium", "magnitude_small",
                "variance_low", "variance_medium", "variance_high")
DEFAULT_CLASSES = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))

# matplotlib's 'hsv' colormap as (position, value) breakpoints per channel (its segment data),
# sampled on the same 256-entry lookup table, so colours match SpuCo's `cm.get_cmap('hsv')`
# without importing matplotlib.
_HSV_SEGMENTS = {
    "red": ((0.0, 1.0), (0.15873, 1.0), (0.174603, 0.96875), (0.333333, 0.03125),
            (0.349206, 0.0), (0.666667, 0.0), (0.68254, 0.03125), (0.84127, 0.96875),
            (0.857143, 1.0), (1.0, 1.0)),
    "green": ((0.0, 0.0), (0.15873, 0.9375), (0.174603, 1.0), (0.507937, 1.0),
              (0.666667, 0.0625), (0.68254, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.0), (0.333333, 0.0), (0.349206, 0.0625), (0.507937, 1.0),
             (0.84127, 1.0), (0.857143, 0.9375), (1.0, 0.09375)),
}
_LUT_SIZE = 256


def hsv_colors(num_colors: int) -> np.ndarray:
  """RGB colours (num_colors, 3) float32 of the HSV colormap at k / num_colors."""
  grid = np.linspace(0.0, 1.0, _LUT_SIZE)
  lut = np.stack([np.interp(grid, *zip(*_HSV_SEGMENTS[c])) for c in ("red", "green", "blue")],
                 axis=1)
  positions = np.arange(num_colors) / num_colors
  idx = np.minimum((positions * _LUT_SIZE).astype(np.int64), _LUT_SIZE - 1)
  return lut[idx].astype(np.float32)


def mask_sizes(image_size: int) -> dict[str, int]:
  """The side lengths of the difficulty masks for an image_size x image_size image (see top)."""
  s = image_size
  small = max(1, round(2 * s / 28))
  medium = max(small + 1, round(4 * s / 28))
  low = max(medium + 1, round(7 * s / 28))
  region = max(low + 1, round(14 * s / 28))
  if region > s:
    raise ConfigError(f"image size {s} is too small for the SpuCo difficulty masks (need >= 4)")
  return {"small": small, "medium": medium, "low": low, "region": region,
          "variance_pixels": low * low}


def difficulty_masks(difficulty: str, num_images: int, image_size: int, *,
                     rng: np.random.Generator) -> np.ndarray:
  """Boolean masks (num_images, S, S) of where the background colour may be painted."""
  if difficulty not in DIFFICULTIES:
    raise ConfigError(f"config.data.difficulty={difficulty!r} is not known; allowed values: "
                      f"{list(DIFFICULTIES)}")
  s = image_size
  sizes = mask_sizes(s)
  masks = np.zeros((num_images, s, s), dtype=bool)
  if difficulty == "magnitude_large":
    masks[:] = True
  elif difficulty in ("magnitude_medium", "magnitude_small", "variance_low"):
    side = sizes[{"magnitude_medium": "medium", "magnitude_small": "small",
                  "variance_low": "low"}[difficulty]]
    masks[:, :side, :side] = True
  else:
    region = sizes["region"] if difficulty == "variance_medium" else s
    k = sizes["variance_pixels"]
    # k distinct random pixels of the region per image: the k smallest of iid uniform keys.
    for start in range(0, num_images, 4096):
      stop = min(num_images, start + 4096)
      keys = rng.random((stop - start, region * region), dtype=np.float32)
      chosen = np.argpartition(keys, k - 1, axis=1)[:, :k]
      rows, cols = np.divmod(chosen, region)
      masks[np.arange(start, stop)[:, None], rows, cols] = True
  return masks


def _exact_count(strength: float, n: int) -> int:
  """floor(strength * n), robust to float rounding (0.95 * 200 is 190, not 189)."""
  return int(math.floor(strength * n + 1e-9))


def correlated_backgrounds(y: np.ndarray, num_classes: int, *,
                           strength: Union[float, Sequence[float]],
                           rng: np.random.Generator) -> np.ndarray:
  """Background colour per example: floor(s_c n_c) of class c get colour c, the rest the
  other colours round-robin, in a random order within the class."""
  strengths = _per_class_strength(strength, num_classes)
  colours = np.empty(len(y), dtype=np.int32)
  for c in range(num_classes):
    members = np.flatnonzero(y == c)
    n = len(members)
    k = _exact_count(strengths[c], n)
    others = np.array([o for o in range(num_classes) if o != c], dtype=np.int32)
    rest = others[np.arange(n - k) % len(others)] if len(others) else np.zeros(0, np.int32)
    plan = np.concatenate([np.full(k, c, dtype=np.int32), rest])
    colours[members] = plan[rng.permutation(n)]
  return colours


def balanced_backgrounds(y: np.ndarray, num_classes: int, *,
                         rng: np.random.Generator) -> np.ndarray:
  """Background colour per example with colours balanced within each class (i mod C)."""
  colours = np.empty(len(y), dtype=np.int32)
  for c in range(num_classes):
    members = np.flatnonzero(y == c)
    plan = (np.arange(len(members)) % num_classes).astype(np.int32)
    colours[members] = plan[rng.permutation(len(members))]
  return colours


def paint_backgrounds(images: np.ndarray, colours: np.ndarray, palette: np.ndarray, *,
                      difficulty: str, rng: np.random.Generator) -> np.ndarray:
  """Grey images (N, S, S) in [0, 1] -> RGB (N, S, S, 3) with colour painted where pixel == 0
  inside the difficulty mask."""
  n, s = images.shape[0], images.shape[1]
  rgb = np.repeat(images[..., None], 3, axis=-1).astype(np.float32)
  paint = (images == 0) & difficulty_masks(difficulty, n, s, rng=rng)
  rgb[paint] = palette[np.broadcast_to(colours[:, None, None], paint.shape)[paint]]
  return rgb


def core_feature_noise(images: np.ndarray, *, fraction: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Multiplies floor(fraction*N) random digits (without replacement) by a binary mask keeping
  the pixels where N(0, 1) > 0.25 (~40%). Returns (images, noisy flag per example)."""
  images = images.copy()
  chosen = rng.permutation(len(images))[:_exact_count(fraction, len(images))]
  keep = rng.standard_normal((len(chosen),) + images.shape[1:]) > 0.25
  images[chosen] = images[chosen] * keep
  flags = np.zeros(len(images), dtype=bool)
  flags[chosen] = True
  return images, flags


def label_noise(y: np.ndarray, num_classes: int, *, fraction: float,
                rng: np.random.Generator, kind: str = "symmetric") -> np.ndarray:
  """Relabels floor(fraction*N) random examples (without replacement) to another class:
  uniformly ('symmetric') or by a fixed derangement of the classes ('asymmetric'); the shared
  kernel `robustdata.data.label_noise.flip_labels`."""
  return noise_lib.flip_labels(y, num_classes, rate=fraction, kind=kind, rng=rng)[0]


def relabel_digits(digits: np.ndarray, classes: Sequence[Sequence[int]]) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
  """Maps digits to class indices by `classes`; returns (kept positions, class labels)."""
  lookup = np.full(10, -1, dtype=np.int32)
  for c, members in enumerate(classes):
    lookup[list(members)] = c
  labels = lookup[digits]
  kept = np.flatnonzero(labels >= 0)
  return kept, labels[kept]


def _validate_classes(classes) -> tuple[tuple[int, ...], ...]:
  """The class grouping as tuples; ConfigError unless it partitions the digits it uses."""
  try:
    classes = tuple(tuple(int(d) for d in members) for members in classes)
  except TypeError:
    raise ConfigError(
        f"config.data.classes={classes!r} must be a list of lists of digits") from None
  seen = set()
  for members in classes:
    if not members:
      raise ConfigError(f"config.data.classes={classes!r} has an empty class")
    for d in members:
      if not 0 <= d <= 9:
        raise ConfigError(f"config.data.classes={classes!r}: digit {d} is not in 0..9")
      if d in seen:
        raise ConfigError(f"config.data.classes={classes!r}: digit {d} is in two classes; the "
                          "classes must partition the digits used")
      seen.add(d)
  if len(classes) < 2:
    raise ConfigError(f"config.data.classes={classes!r} needs at least two classes")
  return classes


def _per_class_strength(strength, num_classes: int) -> list[float]:
  """The correlation strength per class; ConfigError unless each is in [0, 1]."""
  values = list(strength) if isinstance(strength, (list, tuple, np.ndarray)) else (
      [strength] * num_classes)
  if len(values) != num_classes:
    raise ConfigError(f"config.data.spurious_correlation_strength={strength!r} has {len(values)} "
                      f"entries for {num_classes} classes")
  for v in values:
    if not 0.0 <= float(v) <= 1.0:
      raise ConfigError(f"config.data.spurious_correlation_strength={strength!r} must be in [0, 1]")
  return [float(v) for v in values]


def _check_fraction(name: str, value: float) -> float:
  if not 0.0 <= float(value) <= 1.0:
    raise ConfigError(f"config.data.{name}={value!r} must be in [0, 1]")
  return float(value)


def make_spuco_splits(train_images: np.ndarray, train_digits: np.ndarray, train_ids: np.ndarray,
                      val_images: np.ndarray, val_digits: np.ndarray, val_ids: np.ndarray,
                      test_images: np.ndarray, test_digits: np.ndarray, test_ids: np.ndarray, *,
                      classes: Sequence[Sequence[int]] = DEFAULT_CLASSES,
                      strength: Union[float, Sequence[float]] = 0.95,
                      difficulty: str = "magnitude_large", label_noise_fraction: float = 0.0,
                      core_noise_fraction: float = 0.0, val_balanced: bool = False,
                      seed: int = 0, label_noise_kind: str = "symmetric") -> DataSplits:
  """SpuCoMNIST's construction on grey images (N, S, S) in [0, 1] with digit labels per split.
  Label noise (of `label_noise_kind`) is applied to the train labels before the groups are
  formed; the flipped rows are kept in the train split's extras['label_flipped']."""
  classes = _validate_classes(classes)
  num_classes = len(classes)
  strengths = _per_class_strength(strength, num_classes)
  label_noise_fraction = _check_fraction("label_noise", label_noise_fraction)
  core_noise_fraction = _check_fraction("core_feature_noise", core_noise_fraction)
  if difficulty not in DIFFICULTIES:
    raise ConfigError(f"config.data.difficulty={difficulty!r} is not known; allowed values: "
                      f"{list(DIFFICULTIES)}")
  palette = hsv_colors(num_classes)
  split_keys = {"train": 0, "val": 1, "test": 2}

  def build(name, images, digits, ids, correlated):
    # One stream per split and stage, so e.g. the difficulty does not change the label noise.
    rng_colour, rng_core, rng_paint, rng_label = (
        np.random.default_rng([seed, split_keys[name], stage]) for stage in range(4))
    kept, y = relabel_digits(digits, classes)
    images, ids = images[kept], ids[kept]
    extras = {}
    if correlated:
      colours = correlated_backgrounds(y, num_classes, strength=strengths, rng=rng_colour)
    else:
      colours = balanced_backgrounds(y, num_classes, rng=rng_colour)
    if name == "train" and core_noise_fraction > 0:
      images, extras["core_noise"] = core_feature_noise(images, fraction=core_noise_fraction,
                                                        rng=rng_core)
    x = paint_backgrounds(images, colours, palette, difficulty=difficulty, rng=rng_paint)
    if name == "train" and label_noise_fraction > 0:
      extras["clean_y"] = y
      extras["clean_groups"] = (y * num_classes + colours).astype(np.int32)
      y = label_noise(y, num_classes, fraction=label_noise_fraction, rng=rng_label,
                      kind=label_noise_kind)
      extras["label_flipped"] = y != extras["clean_y"]
    groups = (y * num_classes + colours).astype(np.int32)
    counts = np.bincount(groups, minlength=num_classes * num_classes)
    if len(y) and (counts == 0).any():
      empty = [f"y={g // num_classes},bg={g % num_classes}" for g in np.flatnonzero(counts == 0)]
      field = "spurious_correlation_strength" if correlated else "classes"
      raise ConfigError(
          f"config.data.{field}={strength if correlated else classes!r} leaves the {name} groups "
          f"{empty} empty ({len(y)} examples); lower the strength or use more data")
    return Dataset(x=x, y=y.astype(np.int32), ids=ids.astype(np.int64), groups=groups,
                   spurious=colours, extras=extras)

  train = build("train", train_images, train_digits, train_ids, True)
  val = build("val", val_images, val_digits, val_ids, not val_balanced)
  test = build("test", test_images, test_digits, test_ids, False)
  names = tuple(f"y={g // num_classes},bg={g % num_classes}"
                for g in range(num_classes * num_classes))
  info = {"classes": [list(c) for c in classes], "spurious_correlation_strength": strengths,
          "difficulty": difficulty, "palette": palette.tolist(),
          "mask_sizes": mask_sizes(train.x.shape[1]), "val_balanced": bool(val_balanced),
          "label_noise": label_noise_fraction, "core_feature_noise": core_noise_fraction}
  return DataSplits(train=train, val=val, test=test, num_classes=num_classes,
                    num_groups=num_classes * num_classes, group_names=names, info=info)


def _upsample(images: np.ndarray, factor: int) -> np.ndarray:
  if factor < 1:
    raise ConfigError(f"config.data.upsample={factor} must be an integer >= 1")
  if factor == 1:
    return images
  return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


# The config.data fields `load_spuco_digits` reads, with their defaults (the base config's
# val_fraction 0.1 and test_fraction 0.2 take precedence in runs).
DEFAULTS = {"data_dir": "", "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0,
            "upsample": 1, "classes": DEFAULT_CLASSES, "spurious_correlation_strength": 0.95,
            "difficulty": "magnitude_large", "label_noise": 0.0, "core_feature_noise": 0.0,
            "val_balanced": False, "seed": 0}


@DATASETS.register("spuco_digits", defaults=DEFAULTS)
def load_spuco_digits(cfg) -> DataSplits:
  """SpuCoMNIST on sklearn digits (default) or on MNIST from `config.data.data_dir`.

  Fields (with defaults): classes [[0,1],...,[8,9]], spurious_correlation_strength 0.95 (scalar or
  per class), difficulty 'magnitude_large', label_noise 0, core_feature_noise 0, val_balanced
  False, upsample 1, val_fraction 0.2, test_fraction 0.2 (digits only; MNIST uses its test split),
  split_seed 0 (the train/val/test partition), seed 0 (colours, masks and noise), data_dir ''.
  """
  get = field_reader(cfg, DEFAULTS)
  data_dir = get("data_dir") or ""
  val_fraction = float(get("val_fraction"))
  split_seed = int(get("split_seed"))
  upsample = int(get("upsample"))
  if data_dir:
    if not os.path.isdir(data_dir):
      raise ConfigError(f"config.data.data_dir={data_dir!r} is not a directory")
    from robustdata.data.sources import read_tfds_split  # pylint: disable=g-import-not-at-top
    if not 0.0 < val_fraction < 1.0:
      raise ConfigError(f"config.data.val_fraction={val_fraction} must be in (0, 1)")
    train_x, train_d = read_tfds_split("mnist", "train", data_dir)
    test_x, test_d = read_tfds_split("mnist", "test", data_dir)
    train_x = train_x[..., 0].astype(np.float32) / 255.0
    test_x = test_x[..., 0].astype(np.float32) / 255.0
    tr, va, _ = split_indices(len(train_d), (1.0 - val_fraction, val_fraction, 0.0), split_seed)
    test_ids = len(train_d) + np.arange(len(test_d))
    parts = (train_x[tr], train_d[tr], tr, train_x[va], train_d[va], va, test_x, test_d, test_ids)
    source = "mnist"
  else:
    raw = embedded.sklearn_digits()
    x = raw.images.astype(np.float32) / 16.0
    d = raw.target.astype(np.int64)
    test_fraction = float(get("test_fraction"))
    if not (0.0 <= val_fraction < 1.0 and 0.0 < test_fraction < 1.0
            and val_fraction + test_fraction < 1.0):
      raise ConfigError(f"config.data.val_fraction={val_fraction} and config.data.test_fraction="
                        f"{test_fraction} must be in [0, 1) and (0, 1) with a sum below 1")
    tr, va, te = split_indices(len(d), (1.0 - val_fraction - test_fraction, val_fraction,
                                        test_fraction), split_seed)
    parts = (x[tr], d[tr], tr, x[va], d[va], va, x[te], d[te], te)
    source = "sklearn.datasets.load_digits"
  parts = tuple(_upsample(p, upsample) if i % 3 == 0 else p for i, p in enumerate(parts))
  spec = noise_lib.read_spec(cfg)
  if spec.subset_size < 1.0:  # a fraction of the train digits, before colours and noise
    rows = noise_lib.subset_rows(len(parts[1]), spec.subset_size,
                                 np.random.default_rng([split_seed, noise_lib.SUBSET_STREAM]))
    parts = tuple(p[rows] for p in parts[:3]) + parts[3:]
  splits = make_spuco_splits(
      *parts, classes=get("classes"), strength=get("spurious_correlation_strength"),
      difficulty=get("difficulty"), label_noise_fraction=get("label_noise"),
      core_noise_fraction=get("core_feature_noise"), val_balanced=bool(get("val_balanced")),
      seed=int(get("seed")), label_noise_kind=spec.kind)
  splits.info["source"] = source
  if spec.subset_size < 1.0:
    splits.info["subset_size"] = spec.subset_size
  return splits
