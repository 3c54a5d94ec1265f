"""DP data policies: Poisson sampling (padded to a static physical batch) and fixed-size
shuffled batches, the two samplings the accountant knows (`config.privacy.sampling`).

The expected batch size is `config.train.batch_size`; q = batch_size / N.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustdata.data.policies import EpochPolicy, Policy, batches_of
from robustdata.privacy import sampling
from robustdata.registry import POLICIES, ConfigError


@POLICIES.register("poisson")
class PoissonPolicy(Policy):
  """Every example joins every batch independently with probability q = B / N.

  Batches vary in size; the loader pads them to `physical_batch_size` (a binomial quantile
  with tail 1e-12) with mask 0, so the step compiles once. An epoch is round(N / B) steps.
  An empty draw is served as one row with weight 0 (no gradient, the noise is still added).
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    n = len(self.train)
    rate = self.batch_size / n
    if not 0 < rate <= 1:
      raise ConfigError(f"config.train.batch_size={self.batch_size} gives the sampling rate "
                        f"q={rate:.4g} for N={n} train examples; q must be in (0, 1]")
    self.sampling_rate = rate
    self.physical_batch_size = sampling.poisson_max_batch_size(n, rate)
    self.sampler = sampling.PoissonSampler(n, sampling_rate=rate, seed=0,
                                           max_batch_size=self.physical_batch_size)
    self.sampler.rng = self.rng  # one seeded stream, saved by Policy.state_dict

  def expected_steps_per_epoch(self) -> int:
    return max(1, round(len(self.train) / self.batch_size))

  def steps_for(self, ctx) -> int:
    return self.expected_steps_per_epoch()

  def next_batch(self, ctx) -> tuple[np.ndarray, np.ndarray]:
    indices, weights = self.sampler.next_batch()
    if len(indices) == 0:
      return np.zeros(1, np.int64), np.zeros(1, np.float32)
    return indices, weights

  def results(self) -> dict[str, Any]:
    return {"physical_batch_size": self.physical_batch_size}


@POLICIES.register("shuffle")
class FixedShufflePolicy(EpochPolicy):
  """Disjoint batches of exactly B rows from one permutation per epoch; the last partial batch
  is dropped, so every step has the same size and sampling rate (N // B steps per epoch)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.batch_size > len(self.train):
      raise ConfigError(f"config.train.batch_size={self.batch_size} exceeds the "
                        f"{len(self.train)} train examples (sampling rate > 1)")

  def expected_steps_per_epoch(self) -> int:
    return len(self.train) // self.batch_size

  def plan_epoch(self, ctx):
    order = self.rng.permutation(len(self.train))
    return batches_of(order[:self.expected_steps_per_epoch() * self.batch_size], self.batch_size)

