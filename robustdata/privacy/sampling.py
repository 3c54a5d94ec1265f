"""Host-side batch samplers for DP-SGD (NumPy, seeded `np.random.Generator`).

Poisson sampling gives a variable batch; it is padded to a static size with a 0/1 mask so
the compiled step never recompiles. The static size is a binomial upper quantile with a tiny
tail probability; a draw above it raises rather than silently truncating (which would break
the accounting). Fixed-size shuffling serves disjoint batches of one permutation per epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustdata.privacy import checks


def pad_indices(indices: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pads `indices` to `size` with index 0 and returns (padded, mask) with mask 1 on real rows."""
  indices = np.asarray(indices, np.int64)
  if len(indices) > size:
    raise ValueError(f"{len(indices)} indices do not fit the static batch size {size}")
  padded = np.zeros(size, np.int64)
  padded[:len(indices)] = indices
  mask = np.zeros(size, np.float32)
  mask[:len(indices)] = 1.0
  return padded, mask


def poisson_max_batch_size(dataset_size: int, sampling_rate: float, *,
                           tail: float = 1e-12) -> int:
  """Static padded size: P(Binomial(N, q) > size) <= tail."""
  checks.check_sampling_rate(sampling_rate)
  # Imported here: scipy.stats takes ~0.5 s to import, and only Poisson-sampled DP runs use it.
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return int(min(dataset_size, stats.binom.isf(tail, dataset_size, sampling_rate) + 1))


class PoissonSampler:
  """Each example joins each batch independently with probability q (expected size qN)."""

  def __init__(self, dataset_size: int, *, sampling_rate: float, seed: int,
               max_batch_size: int | None = None):
    checks.check_sampling_rate(sampling_rate)
    self.dataset_size = dataset_size
    self.sampling_rate = sampling_rate
    self.max_batch_size = max_batch_size or poisson_max_batch_size(dataset_size, sampling_rate)
    self.rng = np.random.default_rng(seed)

  @property
  def expected_batch_size(self) -> float:
    return self.sampling_rate * self.dataset_size

  def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights) of one Poisson batch; at most `max_batch_size` indices."""
    chosen = np.flatnonzero(self.rng.random(self.dataset_size) < self.sampling_rate)
    if len(chosen) > self.max_batch_size:
      raise RuntimeError(f"Poisson batch of {len(chosen)} exceeds the static size "
                         f"{self.max_batch_size}; raise max_batch_size")
    return chosen, np.ones(len(chosen), np.float32)

  def next_padded(self) -> tuple[np.ndarray, np.ndarray]:
    """(indices, mask) padded to `max_batch_size`."""
    return pad_indices(self.next_batch()[0], self.max_batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {"rng": self.rng.bit_generator.state}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    self.rng.bit_generator.state = state["rng"]


class ShuffleSampler:
  """Fixed-size batches from one random permutation per epoch (the last partial batch is
  dropped so every step has the same size and the same sampling rate)."""

  def __init__(self, dataset_size: int, *, batch_size: int, seed: int):
    checks.check_sampling_rate(batch_size / dataset_size)
    self.dataset_size = dataset_size
    self.batch_size = batch_size
    self.rng = np.random.default_rng(seed)
    self._order = np.zeros(0, np.int64)
    self._pos = 0

  @property
  def steps_per_epoch(self) -> int:
    return self.dataset_size // self.batch_size

  def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights) of the next batch, reshuffling at each epoch start."""
    if self._pos + self.batch_size > len(self._order):
      self._order = self.rng.permutation(self.dataset_size)
      self._pos = 0
    idx = self._order[self._pos:self._pos + self.batch_size]
    self._pos += self.batch_size
    return idx, np.ones(len(idx), np.float32)

  def state_dict(self) -> dict[str, Any]:
    return {"rng": self.rng.bit_generator.state, "order": self._order.copy(), "pos": self._pos}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    self.rng.bit_generator.state = state["rng"]
    self._order = np.asarray(state["order"], np.int64)
    self._pos = int(state["pos"])
