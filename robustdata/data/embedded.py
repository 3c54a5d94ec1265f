"""scikit-learn's 8x8 digits, the embedded images behind every default dataset, read without
importing scikit-learn (whose import takes ~0.9 s of every run's start-up).

The images ship inside the scikit-learn package as `datasets/data/digits.csv.gz`; this reads
that file as `sklearn.datasets.load_digits` does (the same arrays, bit for bit), and falls back
to `load_digits` itself where the file is not found (another scikit-learn layout).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class Digits:
  """images (1797, 8, 8) float64 with values 0..16; target (1797,) int labels 0..9."""

  images: np.ndarray
  target: np.ndarray


def sklearn_digits() -> Digits:
  """The digits as `sklearn.datasets.load_digits()` gives them (fresh, writable copies)."""
  images, target = _read()
  return Digits(images=images.copy(), target=target.copy())


@functools.lru_cache(maxsize=1)
def _read() -> tuple[np.ndarray, np.ndarray]:
  spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
  locations = list(spec.submodule_search_locations or []) if spec else []
  path = os.path.join(locations[0], "datasets", "data", "digits.csv.gz") if locations else ""
  if os.path.isfile(path):
    with gzip.open(path, "rt") as f:
      data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  raw = load_digits()
  return np.asarray(raw.images), np.asarray(raw.target)
