"""Group utilities: counts, up-/down-sampling and class- or group-balanced batch sampling."""

from __future__ import annotations

import numpy as np


def group_counts(groups: np.ndarray, *, num_groups: int) -> np.ndarray:
  """Examples per group, (num_groups,) int64."""
  return np.bincount(np.asarray(groups), minlength=num_groups).astype(np.int64)


def upsample_indices(groups: np.ndarray, *, num_groups: int,
                     rng: np.random.Generator) -> np.ndarray:
  """Indices with every non-empty group brought to the largest group's size (SpuCo's
  UpSampleERM): a group of n is repeated floor(max/n) times plus a random subset (without
  replacement) of max mod n of its examples. Returned shuffled."""
  groups = np.asarray(groups)
  target = int(group_counts(groups, num_groups=num_groups).max())
  out = []
  for g in range(num_groups):
    members = np.flatnonzero(groups == g)
    if len(members) == 0:
      continue
    reps, rest = divmod(target, len(members))
    out.append(np.tile(members, reps))
    out.append(rng.choice(members, size=rest, replace=False))
  return rng.permutation(np.concatenate(out)).astype(np.int64)


def downsample_indices(groups: np.ndarray, *, num_groups: int,
                       rng: np.random.Generator) -> np.ndarray:
  """Indices with every non-empty group subsampled without replacement to the smallest
  non-empty group's size (SpuCo's DownSampleERM). Returned shuffled."""
  groups = np.asarray(groups)
  counts = group_counts(groups, num_groups=num_groups)
  target = int(counts[counts > 0].min())
  out = [rng.choice(np.flatnonzero(groups == g), size=target, replace=False)
         for g in range(num_groups) if counts[g] > 0]
  return rng.permutation(np.concatenate(out)).astype(np.int64)


def balanced_sampling_probabilities(labels: np.ndarray, *, num_labels: int) -> np.ndarray:
  """Per-example probabilities that give every present label value (class or group) equal
  total mass: p_i = 1 / (n_{label_i} * number of present labels)."""
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=num_labels)
  present = int((counts > 0).sum())
  return 1.0 / (counts[labels] * present)


def balanced_batches(labels: np.ndarray, *, num_labels: int, batch_size: int, num_batches: int,
                     rng: np.random.Generator) -> np.ndarray:
  """(num_batches, batch_size) indices drawn with replacement so each label value (pass groups
  for GroupBalanceBatchERM / GroupDRO, classes for ClassBalanceBatchERM) is equally likely."""
  p = balanced_sampling_probabilities(labels, num_labels=num_labels)
  flat = rng.choice(len(p), size=num_batches * batch_size, replace=True, p=p)
  return flat.reshape(num_batches, batch_size).astype(np.int64)
