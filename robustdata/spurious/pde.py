"""Progressive Data Expansion (Deng*, Yang*, et al., NeurIPS'23; spec §4): host-side kernels.

1. Warm-up set: m = max(smallest non-empty group size, subsample_cap); within each class a
   group larger than half the class (a majority group) is subsampled to int(m * alpha / (1 -
   alpha)) (= m at alpha = 0.5) and any other group to m, without replacement; smaller groups
   are kept whole.
2. Expansion: at each milestone (arange(add_start, num_epochs, add_interval)) add `add_num`
   examples drawn uniformly from the unused ones (without replacement by default;
   `with_replacement=True` reproduces the reference's `np.random.choice(unused, add_num)`,
   which can add an example twice), or with `uniform_add` the same number from every group; if
   at most add_num examples are unused, all are added.
   `same_across_class_indices` is the CelebA variant that rebuilds the set at add_start.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def warmup_indices(labels: np.ndarray, groups: np.ndarray, *, rng: np.random.Generator,
                   subsample_cap: int = 1, alpha: float = 0.5) -> np.ndarray:
  """The group-balanced warm-up subset (sorted indices into the train split)."""
  labels, groups = np.asarray(labels), np.asarray(groups)
  counts = np.bincount(groups)
  m = max(int(counts[counts > 0].min()), int(subsample_cap))
  majority_size = int(m / (1.0 - alpha) * alpha)
  chosen = []
  for c in np.unique(labels):
    in_class = np.flatnonzero(labels == c)
    for g in np.unique(groups[in_class]):
      members = in_class[groups[in_class] == g]
      size = majority_size if len(members) > len(in_class) // 2 else m
      if size >= len(members):
        chosen.append(members)
      else:
        chosen.append(rng.choice(members, size=size, replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def same_across_class_indices(groups: np.ndarray, attribute: np.ndarray, *,
                              rng: np.random.Generator) -> np.ndarray:
  """CelebA's `same_across_class` rebuild: for each attribute value, every group having it is
  subsampled (without replacement) to that attribute's smallest group size."""
  groups, attribute = np.asarray(groups), np.asarray(attribute)
  chosen = []
  for a in np.unique(attribute):
    with_a = np.flatnonzero(attribute == a)
    present, sizes = np.unique(groups[with_a], return_counts=True)
    size = int(sizes.min())
    for g in present:
      chosen.append(rng.choice(with_a[groups[with_a] == g], size=size, replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def expansion_milestones(*, add_start: int, add_interval: int, num_epochs: int) -> np.ndarray:
  """The epochs at which data is added: arange(add_start, num_epochs, add_interval)."""
  if add_start < 0:
    return np.zeros(0, dtype=np.int64)
  if add_interval <= 0:
    raise ValueError(f"add_interval={add_interval} must be positive")
  return np.arange(add_start, num_epochs, add_interval, dtype=np.int64)


def auto_add_num(num_unused: int, milestones_left: int) -> int:
  """The reference's add_num <= 0 rule: spread the unused examples over the milestones left."""
  return int(math.ceil(num_unused / max(milestones_left, 1)))


def expand_indices(current: np.ndarray, num_examples: int, *, add_num: int,
                   rng: np.random.Generator, with_replacement: bool = False,
                   uniform_add: bool = False, groups: Optional[np.ndarray] = None,
                   num_groups: Optional[int] = None) -> np.ndarray:
  """`current` with the examples added at one milestone appended (training-set order kept).

  uniform_add: each group with unused examples gives min(smallest non-empty unused group,
  add_num // num_groups) examples, without replacement (needs `groups` and `num_groups`).
  """
  current = np.asarray(current, dtype=np.int64)
  unused = np.setdiff1d(np.arange(num_examples), current)
  if len(unused) <= add_num:
    added = unused
  elif uniform_add:
    if groups is None or num_groups is None:
      raise ValueError("uniform_add needs `groups` and `num_groups`")
    unused_groups = np.asarray(groups)[unused]
    counts = np.bincount(unused_groups, minlength=num_groups)
    per_group = min(int(counts[counts > 0].min()), add_num // num_groups)
    added = np.concatenate([
        rng.choice(unused[unused_groups == g], size=per_group, replace=False)
        for g in range(num_groups) if counts[g] > 0])
  else:
    added = rng.choice(unused, size=add_num, replace=with_replacement)
  return np.concatenate([current, np.asarray(added, dtype=np.int64)])
