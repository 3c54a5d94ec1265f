"""The PDE paper's synthetic patch data (Deng*, Yang*, et al., NeurIPS'23; spec §4).

Each example is `num_patches` patches of `patch_dim` dims in a random order: a core patch
core_scale * v_c * y, a spurious patch spurious_scale * v_s * a and noise patches
N(0, noise_std^2 I), with v_c, v_s orthonormal random directions, y in {-1, +1} uniform and a = y with probability
`spurious_correlation` (else -y). Case 1 (the paper's main case): core 1/5, spurious 1, so ERM
learns the spurious feature; case 2 swaps the strengths and ERM learns the core.

Labels: class = (y + 1) / 2, spurious = (a + 1) / 2, group = class * 2 + spurious, so the groups
are (y=-1,a=-1), (y=-1,a=+1), (y=+1,a=-1), (y=+1,a=+1) and groups 0 and 3 are the majority.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from robustdata.data.dataset import DataSplits, Dataset
from robustdata.registry import DATASETS, ConfigError, field_reader

CASE_SCALES = {1: (0.2, 1.0), 2: (1.0, 0.2)}  # case -> (core_scale, spurious_scale)
GROUP_NAMES = ("y=0,a=0", "y=0,a=1", "y=1,a=0", "y=1,a=1")


def feature_directions(patch_dim: int, *, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                           np.ndarray]:
  """Orthonormal random core and spurious directions v_c, v_s of length patch_dim."""
  q, _ = np.linalg.qr(rng.standard_normal((patch_dim, 2)))
  return q[:, 0].astype(np.float32), q[:, 1].astype(np.float32)


def sample_patches(n: int, v_c: np.ndarray, v_s: np.ndarray, *, core_scale: float,
                   spurious_scale: float, noise_std: float, spurious_correlation: float,
                   num_patches: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
  """n examples (n, num_patches * patch_dim) with their y and a in {-1, +1}."""
  d = len(v_c)
  y = rng.choice(np.array([-1, 1]), size=n)
  a = np.where(rng.random(n) < spurious_correlation, y, -y)
  patches = noise_std * rng.standard_normal((n, num_patches, d))
  # Random patch order: the core and spurious patches take two distinct random slots.
  order = np.argsort(rng.random((n, num_patches)), axis=1)
  rows = np.arange(n)
  patches[rows, order[:, 0]] = core_scale * y[:, None] * v_c[None]
  patches[rows, order[:, 1]] = spurious_scale * a[:, None] * v_s[None]
  return patches.reshape(n, num_patches * d).astype(np.float32), y, a


def _to_dataset(x: np.ndarray, y: np.ndarray, a: np.ndarray, id_offset: int) -> Dataset:
  cls = ((y + 1) // 2).astype(np.int32)
  spurious = ((a + 1) // 2).astype(np.int32)
  return Dataset(x=x, y=cls, ids=id_offset + np.arange(len(x), dtype=np.int64),
                 groups=(cls * 2 + spurious).astype(np.int32), spurious=spurious)


def make_pde_synthetic(*, n_train: int = 10000, n_val: int = 2000, n_test: int = 10000,
                       patch_dim: int = 50, num_patches: int = 3, case: int = 1,
                       core_scale: Optional[float] = None, spurious_scale: Optional[float] = None,
                       noise_std: float = 1.0 / 8.0, spurious_correlation: float = 0.98,
                       test_spurious_correlation: Optional[float] = None,
                       seed: int = 0) -> DataSplits:
  """Train/val/test splits of the patch data; `info` holds v_c and v_s (lists) for alignment.

  Val and test use the train correlation unless `test_spurious_correlation` is given.
  """
  if case not in CASE_SCALES:
    raise ConfigError(f"config.data.case={case!r} must be one of {sorted(CASE_SCALES)}")
  if num_patches < 2:
    raise ConfigError(f"config.data.num_patches={num_patches} must be >= 2 (core + spurious)")
  for name, value in (("spurious_correlation", spurious_correlation),
                      ("test_spurious_correlation", test_spurious_correlation)):
    if value is not None and not 0.0 <= value <= 1.0:
      raise ConfigError(f"config.data.{name}={value!r} must be in [0, 1]")
  for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
    if value < 0:
      raise ConfigError(f"config.data.{name}={value} must be >= 0")
  default_core, default_spurious = CASE_SCALES[case]
  core_scale = default_core if core_scale is None else float(core_scale)
  spurious_scale = default_spurious if spurious_scale is None else float(spurious_scale)
  eval_corr = spurious_correlation if test_spurious_correlation is None else (
      test_spurious_correlation)
  v_c, v_s = feature_directions(patch_dim, rng=np.random.default_rng([seed, 0]))
  common = dict(core_scale=core_scale, spurious_scale=spurious_scale, noise_std=noise_std,
                num_patches=num_patches)
  parts = {}
  offset = 0
  for k, (name, n, corr) in enumerate((("train", n_train, spurious_correlation),
                                       ("val", n_val, eval_corr), ("test", n_test, eval_corr))):
    x, y, a = sample_patches(n, v_c, v_s, spurious_correlation=corr,
                             rng=np.random.default_rng([seed, k + 1]), **common)
    parts[name] = _to_dataset(x, y, a, offset)
    offset += n
  info = {"v_c": v_c.tolist(), "v_s": v_s.tolist(), "case": case, "core_scale": core_scale,
          "spurious_scale": spurious_scale, "noise_std": noise_std, "patch_dim": patch_dim,
          "num_patches": num_patches, "spurious_correlation": spurious_correlation}
  return DataSplits(train=parts["train"], val=parts["val"], test=parts["test"], num_classes=2,
                    num_groups=4, group_names=GROUP_NAMES, info=info)


# The config.data fields `load_pde_synthetic` reads, with their defaults (None: the case's).
DEFAULTS = {"n_train": 10000, "n_val": 2000, "n_test": 10000, "patch_dim": 50, "num_patches": 3,
            "case": 1, "core_scale": None, "spurious_scale": None, "noise_std": 1.0 / 8.0,
            "spurious_correlation": 0.98, "test_spurious_correlation": None, "seed": 0}


@DATASETS.register("pde_synthetic", defaults=DEFAULTS)
def load_pde_synthetic(cfg) -> DataSplits:
  """`make_pde_synthetic` with its keyword arguments read from `config.data` (same names)."""
  get = field_reader(cfg, DEFAULTS)

  def opt(name):
    value = get(name)
    return None if value is None else float(value)
  return make_pde_synthetic(
      n_train=int(get("n_train")), n_val=int(get("n_val")), n_test=int(get("n_test")),
      patch_dim=int(get("patch_dim")), num_patches=int(get("num_patches")),
      case=int(get("case")), core_scale=opt("core_scale"), spurious_scale=opt("spurious_scale"),
      noise_std=float(get("noise_std")), spurious_correlation=float(get("spurious_correlation")),
      test_spurious_correlation=opt("test_spurious_correlation"), seed=int(get("seed")))
