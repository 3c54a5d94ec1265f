"""Datasets: per-example arrays with stable example ids, labels and optional annotations.

A `Dataset` is one split (train, val or test). Every array has the example axis first and the
same length. `x` is a NumPy array or a lazy random-access array that reads and decodes only the
rows asked for (robustdata/data/records.py); the other fields are small host arrays. `ids` are
stable across runs (they name the example in the source), so a coreset or a poison list can be
written to disk and read back against another run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import numpy as np


@dataclasses.dataclass
class Dataset:
  """One split of a dataset: labels and annotations as host NumPy arrays, inputs in memory or
  read lazily by row.

  Attributes:
    x: inputs, (N, ...) float32 (images are NHWC in [0, 1] unless a source says otherwise); a
      NumPy array or a `records.RecordArray` (x[rows] reads and decodes those rows).
    y: integer class labels, (N,).
    ids: stable example ids, (N,) int64.
    groups: optional group index per example, (N,) int32 in [0, num_groups).
    spurious: optional spurious-attribute index per example, (N,) int32.
    extras: further per-example arrays (captions as token ids, clean labels, poison flags...).
  """

  x: np.ndarray
  y: np.ndarray
  ids: np.ndarray
  groups: Optional[np.ndarray] = None
  spurious: Optional[np.ndarray] = None
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    n = len(self.x)
    for name, arr in self.arrays().items():
      if len(arr) != n:
        raise ValueError(f"Dataset field '{name}' has {len(arr)} rows, expected {n} (len(x)).")

  def __len__(self) -> int:
    return len(self.x)

  def arrays(self) -> dict[str, np.ndarray]:
    """All per-example arrays by name (None fields left out)."""
    out = {"x": self.x, "y": self.y, "ids": self.ids}
    if self.groups is not None:
      out["groups"] = self.groups
    if self.spurious is not None:
      out["spurious"] = self.spurious
    out.update(self.extras)
    return out

  def subset(self, indices: np.ndarray) -> "Dataset":
    """The examples at `indices` (a copy; a lazy view of a lazy `x`), keeping ids and
    annotations."""
    indices = np.asarray(indices)
    take = lambda a: None if a is None else a[indices]
    select = getattr(self.x, "select", None)  # a lazy x: a view, nothing read
    return Dataset(
        x=select(indices) if select is not None else self.x[indices], y=self.y[indices],
        ids=self.ids[indices],
        groups=take(self.groups), spurious=take(self.spurious),
        extras={k: v[indices] for k, v in self.extras.items()})

  def replace(self, **changes: Any) -> "Dataset":
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class DataSplits:
  """The splits of a dataset and what models and evaluations need to know about it.

  Attributes:
    train, val, test: the splits (val may be empty but is never None).
    num_classes: number of classes of `y`.
    num_groups: number of groups when `groups` is set on the splits, else 0.
    group_names: a readable name per group index (for results.json and plots).
    info: free-form metadata of the source (class names, prompts, correlation strength...).
  """

  train: Dataset
  val: Dataset
  test: Dataset
  num_classes: int
  num_groups: int = 0
  group_names: tuple[str, ...] = ()
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])

  def splits(self) -> dict[str, Dataset]:
    return {"train": self.train, "val": self.val, "test": self.test}


def split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> tuple[np.ndarray, ...]:
  """A deterministic random partition of range(n) into train/val/test by `fractions`."""
  if abs(sum(fractions) - 1.0) > 1e-6:
    raise ValueError(f"split fractions must sum to 1, got {fractions}")
  perm = np.random.default_rng(seed).permutation(n)
  n_train = int(round(fractions[0] * n))
  n_val = int(round(fractions[1] * n))
  return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
