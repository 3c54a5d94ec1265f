"""SPARE's importance sampling (Yang et al. '23; SpuCo's SpareTrain): within each class, an
example of group g is drawn with weight |g|^(-power_c), the weights of every class renormalised
to the same total, so small (inferred) groups are drawn more often the higher the class's power.

power 0 draws each class's examples uniformly (class-balanced); power 1 draws each group of a
class equally often (group-balanced within the class); SPARE's inference sets power 2 for
classes whose clusters are not well separated (`inference.spare_groups`).
"""

from __future__ import annotations

import numpy as np


def sampling_probabilities(labels: np.ndarray, groups: np.ndarray, powers: np.ndarray
                           ) -> np.ndarray:
  """Per-example probabilities (N,), summing to 1: p_i proportional to n_(g_i, y_i)^(-power_y_i)
  with n_(g, c) the number of class-c examples in group g, each present class's total 1/C.

  `powers` is indexed by class (length > max label).
  """
  labels = np.asarray(labels, np.int64)
  groups = np.asarray(groups, np.int64)
  powers = np.asarray(powers, np.float64)
  if labels.shape != groups.shape or labels.ndim != 1 or len(labels) == 0:
    raise ValueError(f"labels {labels.shape} and groups {groups.shape} must be equal, non-empty "
                     "and one-dimensional")
  # Count each (class, group) pair; each example reads its pair's count.
  pairs, pair_of, counts = np.unique(np.stack([labels, groups], 1), axis=0, return_inverse=True,
                                     return_counts=True)
  del pairs
  pair_of = pair_of.reshape(-1)
  weights = counts[pair_of].astype(np.float64) ** -powers[labels]
  class_totals = np.bincount(labels, weights=weights)
  present = int(np.count_nonzero(np.bincount(labels)))
  return weights / class_totals[labels] / present


def sample_indices(probabilities: np.ndarray, num: int, *, rng: np.random.Generator
                   ) -> np.ndarray:
  """`num` indices drawn with replacement with the given probabilities (an epoch of SPARE)."""
  return rng.choice(len(probabilities), size=num, replace=True, p=probabilities).astype(np.int64)
