"""Adapter that runs apricot-select's FacilityLocationSelection for benchmarks only.

apricot's own 'euclidean' metric uses *squared* distances (max - d^2), which is neither kernel of
spec §0, so we hand it a precomputed similarity with the same kernel as ours ('craig': M - d,
'exp': exp(-d/D)), built with NumPy in float32, and time the build and the fit separately.
Requires `pip install apricot-select` (imported lazily so the package never depends on it).
"""

from __future__ import annotations

import time

import numpy as np


def available() -> bool:
  """True if apricot-select is importable."""
  try:
    import apricot  # noqa: F401
  except ImportError:
    return False
  return True


def similarity(x: np.ndarray, kernel: str) -> np.ndarray:
  """Dense float32 similarity (n, n) with the given kernel, as apricot's input."""
  x = np.asarray(x, np.float32)
  x = x - x.mean(axis=0, keepdims=True)
  sq = np.einsum("ij,ij->i", x, x)
  dist = sq[:, None] + sq[None, :]
  dist -= 2.0 * (x @ x.T)
  np.maximum(dist, 0.0, out=dist)
  np.sqrt(dist, out=dist)
  if kernel == "craig":
    return np.subtract(dist.max(), dist, out=dist)
  np.divide(dist, -float(x.shape[1]), out=dist)
  return np.exp(dist, out=dist)


def select(x: np.ndarray, k: int, *, kernel: str = "craig",
           optimizer: str = "lazy") -> tuple[np.ndarray, dict[str, float]]:
  """Runs apricot's facility location on x (one class); returns (ranking, timings in seconds)."""
  from apricot import FacilityLocationSelection
  t0 = time.perf_counter()
  sim = similarity(x, kernel)
  t1 = time.perf_counter()
  selector = FacilityLocationSelection(k, metric="precomputed", optimizer=optimizer)
  selector.fit(sim)
  t2 = time.perf_counter()
  return np.asarray(selector.ranking, np.int64), {"build_s": t1 - t0, "fit_s": t2 - t1,
                                                  "total_s": t2 - t0}
