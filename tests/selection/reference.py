"""Independent float64 NumPy references for facility location (brute force, no blocking)."""

import itertools

import numpy as np


def similarity(x: np.ndarray, kernel: str) -> np.ndarray:
  """Dense similarity from explicit differences (not the |a|^2 + |b|^2 - 2ab expansion)."""
  x = np.asarray(x, np.float64)
  dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
  return dist.max() - dist if kernel == "craig" else np.exp(-dist / x.shape[1])


def greedy(sim: np.ndarray, k: int, row_weights=None) -> np.ndarray:
  """Textbook greedy: every gain recomputed each step; ties to the lowest index."""
  n = sim.shape[0]
  w = np.ones(n) if row_weights is None else np.asarray(row_weights, np.float64)
  cur = np.zeros(n)
  order = []
  for _ in range(k):
    gains = (w[:, None] * np.maximum(sim - cur[:, None], 0.0)).sum(0)
    gains[order] = -np.inf
    j = int(np.argmax(gains))
    order.append(j)
    cur = np.maximum(cur, sim[:, j])
  return np.asarray(order)


def value(sim: np.ndarray, selected) -> float:
  """F(S) = Σ_i max_{j∈S} s_ij."""
  return float(sim[:, list(selected)].max(axis=1).sum())


def optimum(sim: np.ndarray, k: int) -> float:
  """Exhaustive max of F over all k-subsets (small n only)."""
  return max(value(sim, s) for s in itertools.combinations(range(sim.shape[0]), k))


def cluster_sizes(sim: np.ndarray, selected) -> np.ndarray:
  """Members whose most similar selected medoid is each pick (ties: earlier pick)."""
  nearest = np.argmax(sim[:, list(selected)], axis=1)
  return np.bincount(nearest, minlength=len(selected)).astype(np.float64)
