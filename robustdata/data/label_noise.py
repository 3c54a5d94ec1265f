"""Label noise and sample size as a transform of the train split, for every classification source.

Config (all in `config.data`; the last two are absent unless a config sets them, so configs
without them keep their run ids):
  label_noise       r in [0, 1): round(r N) train labels are flipped (0 disables).
  label_noise_kind  'symmetric' (default): each flipped label becomes a uniformly chosen *other*
                    class; 'asymmetric': it becomes perm[y] for one fixed class permutation
                    without fixed points (a derangement) drawn from the seed.
  subset_size       s in (0, 1]: keep round(s N) train examples (at least one), drawn before
                    the noise, so the noise rate is that of the kept examples (default 1).
Val and test are untouched. Everything is drawn once from `config.data.split_seed` with NumPy
Generators (the noise is part of the dataset, like the split). The flipped rows are recorded in
`train.extras['label_flipped']` (bool) next to the true labels `train.extras['clean_y']`, so
train metrics can be split into clean and noisy examples
(`evals.classification.label_noise_metrics`).

`sources.load` applies `corrupt_train` to every source except those that register
`label_noise` among their own fields and call the kernels here themselves (digits: after its
jittered copies; spuco_digits: before its groups are formed).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from robustdata.data.dataset import DataSplits, Dataset
from robustdata.registry import ConfigError

KINDS = ("symmetric", "asymmetric")
# Stream tags of the generic transform: default_rng([split_seed, tag]).
SUBSET_STREAM = 0x5B5E7
NOISE_STREAM = 0x1AB31


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
  """The label-noise fields of a `config.data` section, validated."""

  rate: float = 0.0
  kind: str = "symmetric"
  subset_size: float = 1.0

  @property
  def active(self) -> bool:
    return self.rate > 0 or self.subset_size < 1.0


def read_spec(cfg: Any) -> NoiseSpec:
  """The NoiseSpec of `cfg` (a config.data section, dict or None); a ConfigError names a bad
  field, its value and what is allowed."""
  get = (lambda k, d: d) if cfg is None else (lambda k, d: cfg.get(k, d))
  rate, kind, subset = get("label_noise", 0.0), get("label_noise_kind", "symmetric"), get(
      "subset_size", 1.0)
  _check("label_noise", rate, 0.0 <= rate < 1.0 if _number(rate) else None, "[0, 1)")
  if kind not in KINDS:
    raise ConfigError(f"config.data.label_noise_kind={kind!r} is not known; allowed: "
                      f"{list(KINDS)}")
  _check("subset_size", subset, 0.0 < subset <= 1.0 if _number(subset) else None, "(0, 1]")
  return NoiseSpec(rate=float(rate), kind=kind, subset_size=float(subset))


def _number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
      value, bool) and math.isfinite(value)


def _check(field: str, value: Any, in_range: Optional[bool], interval: str) -> None:
  """ConfigError naming config.data.<field> unless in_range (None: not a finite number)."""
  if not in_range:
    why = "is not a finite number" if in_range is None else "is out of range"
    raise ConfigError(f"config.data.{field}={value!r} {why}; allowed: a number in {interval}")


def flip_count(rate: float, n: int) -> int:
  """round(rate * n), halves up, robust to float rounding (0.3 * 10 is 3, not 2)."""
  return int(math.floor(rate * n + 0.5 + 1e-9))


def subset_rows(n: int, subset_size: float, rng: np.random.Generator) -> np.ndarray:
  """round(subset_size * n) (at least 1) distinct rows of range(n), uniformly, sorted."""
  if subset_size >= 1.0:
    return np.arange(n)
  keep = max(1, int(round(subset_size * n)))
  return np.sort(rng.permutation(n)[:keep])


def derangement(num_classes: int, rng: np.random.Generator) -> np.ndarray:
  """A uniformly random permutation of range(num_classes) without fixed points (by rejection;
  about e tries on average)."""
  if num_classes < 2:
    raise ConfigError(f"asymmetric label noise needs at least 2 classes, got {num_classes}")
  classes = np.arange(num_classes)
  while True:
    perm = rng.permutation(num_classes)
    if not np.any(perm == classes):
      return perm


def flip_labels(y: np.ndarray, num_classes: int, *, rate: float, kind: str = "symmetric",
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
  """(noisy labels, flipped mask, class permutation or None) for integer labels `y`.

  round(rate N) rows are chosen uniformly without replacement. 'symmetric': row i gets
  (y_i + k_i) mod C with k_i uniform in 1..C-1, i.e. uniform over the other classes;
  'asymmetric': row i gets perm[y_i] for one derangement `perm` (drawn first). A flipped label
  never equals the original one.
  """
  if kind not in KINDS:
    raise ConfigError(f"config.data.label_noise_kind={kind!r} is not known; allowed: "
                      f"{list(KINDS)}")
  y = np.asarray(y)
  out = y.copy()
  flipped = np.zeros(len(y), dtype=bool)
  if rate <= 0:
    return out, flipped, None
  if num_classes < 2:
    raise ConfigError(f"config.data.label_noise={rate} needs at least 2 classes; this source "
                      f"has {num_classes}")
  perm = derangement(num_classes, rng) if kind == "asymmetric" else None
  chosen = rng.permutation(len(y))[:flip_count(rate, len(y))]
  if perm is None:
    out[chosen] = (y[chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
  else:
    out[chosen] = perm[y[chosen]]
  flipped[chosen] = True
  return out.astype(y.dtype), flipped, perm


def noisy_train(train: Dataset, num_classes: int, spec: NoiseSpec,
                rng: np.random.Generator) -> tuple[Dataset, dict[str, Any]]:
  """`train` with spec's noise on its labels (the true labels kept in extras['clean_y'] unless
  already there, the flipped rows in extras['label_flipped']) and the info entries to record."""
  noisy, flipped, perm = flip_labels(train.y, num_classes, rate=spec.rate, kind=spec.kind,
                                     rng=rng)
  extras = dict(train.extras)
  extras.setdefault("clean_y", train.y.copy())
  extras["label_flipped"] = flipped
  info: dict[str, Any] = {"label_noise": spec.rate, "label_noise_kind": spec.kind,
                          "flipped_labels": int(flipped.sum())}
  if perm is not None:
    info["label_noise_permutation"] = perm.tolist()
  return train.replace(y=noisy, extras=extras), info


def corrupt_train(data: DataSplits, cfg: Any) -> DataSplits:
  """`data` with config.data's subset_size and label noise applied to the train split (the
  subset first, from its own stream); `data` itself when neither is set."""
  spec = read_spec(cfg)
  if not spec.active:
    return data
  split_seed = int(cfg.get("split_seed", 0)) if cfg is not None else 0
  train, info = data.train, dict(data.info)
  if spec.subset_size < 1.0:
    rows = subset_rows(len(train), spec.subset_size,
                       np.random.default_rng([split_seed, SUBSET_STREAM]))
    train = train.subset(rows)
    info["subset_size"] = spec.subset_size
  if spec.rate > 0:
    train, noise_info = noisy_train(train, data.num_classes, spec,
                                    np.random.default_rng([split_seed, NOISE_STREAM]))
    info.update(noise_info)
  return dataclasses.replace(data, train=train, info=info)
