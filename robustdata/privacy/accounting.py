"""Privacy accounting through `dp_accounting` (RDP and PLD) and noise calibration.

A DP-SGD run is `steps` self-composed subsampled Gaussian mechanisms with noise multiplier
sigma. Poisson sampling is accounted as `PoissonSampledDpEvent` (add/remove-one adjacency);
fixed-size shuffled batches as `SampledWithoutReplacementDpEvent` (replace-one adjacency, RDP
only), the usual approximation of shuffling.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from robustdata.privacy import checks
from robustdata.registry import ConfigError

if TYPE_CHECKING:  # imported where used: ~0.9 s at start-up, and only DP runs account
  import dp_accounting

RDP_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
                   + [128, 256, 512, 1024])


def dpsgd_event(*, noise_multiplier: float, sampling_rate: float, steps: int,
                sampling: str = "poisson", dataset_size: Optional[int] = None
                ) -> dp_accounting.DpEvent:
  """The DpEvent of `steps` subsampled Gaussian steps."""
  import dp_accounting  # pylint: disable=g-import-not-at-top,redefined-outer-name
  gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
  if sampling == "poisson":
    step = dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)
  elif sampling == "shuffle":
    if dataset_size is None:
      raise ConfigError("config.privacy.sampling='shuffle' accounting needs the dataset size")
    batch = max(1, int(round(sampling_rate * dataset_size)))
    step = dp_accounting.SampledWithoutReplacementDpEvent(dataset_size, batch, gaussian)
  else:
    raise ConfigError(f"config.privacy.sampling={sampling!r} must be one of "
                      f"{list(checks.SAMPLINGS)}")
  return dp_accounting.SelfComposedDpEvent(step, int(steps))


def make_accountant(accountant: str, sampling: str = "poisson"
                    ) -> dp_accounting.PrivacyAccountant:
  """A fresh RDP or PLD accountant with the adjacency that matches the sampling."""
  import dp_accounting  # pylint: disable=g-import-not-at-top,redefined-outer-name
  from dp_accounting import pld, rdp  # pylint: disable=g-import-not-at-top
  checks.check_choice("accountant", accountant, checks.ACCOUNTANTS)
  if sampling == "shuffle":
    if accountant != "rdp":
      raise ConfigError("config.privacy.accountant='pld' does not support "
                        "config.privacy.sampling='shuffle'; use accountant='rdp'")
    return rdp.RdpAccountant(list(RDP_ORDERS), dp_accounting.NeighboringRelation.REPLACE_ONE)
  if accountant == "rdp":
    return rdp.RdpAccountant(list(RDP_ORDERS))
  return pld.PLDAccountant()


def _check(noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
           dataset_size: Optional[int]) -> None:
  checks.check_noise_multiplier(noise_multiplier)
  checks.check_sampling_rate(sampling_rate)
  checks.check_steps(steps)
  checks.check_delta(delta, dataset_size)


def epsilon(*, noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
            accountant: str = "rdp", sampling: str = "poisson",
            dataset_size: Optional[int] = None) -> float:
  """Epsilon at `delta` after `steps` DP-SGD steps (inf without noise, 0 without steps)."""
  _check(noise_multiplier, sampling_rate, steps, delta, dataset_size)
  if steps == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  acc = make_accountant(accountant, sampling)
  acc.compose(dpsgd_event(noise_multiplier=noise_multiplier, sampling_rate=sampling_rate,
                          steps=steps, sampling=sampling, dataset_size=dataset_size))
  return float(acc.get_epsilon(delta))


def calibrate_noise_multiplier(*, target_epsilon: float, sampling_rate: float, steps: int,
                               delta: float, accountant: str = "rdp",
                               sampling: str = "poisson", dataset_size: Optional[int] = None,
                               bounds: tuple[float, float] = (0.05, 200.0),
                               tol: float = 1e-3) -> float:
  """The smallest noise multiplier in `bounds` whose epsilon is <= target_epsilon."""
  if not target_epsilon > 0:
    raise ConfigError(f"config.privacy.target_epsilon={target_epsilon} must be > 0")
  _check(bounds[1], sampling_rate, steps, delta, dataset_size)
  eps = lambda s: epsilon(noise_multiplier=s, sampling_rate=sampling_rate, steps=steps,
                          delta=delta, accountant=accountant, sampling=sampling,
                          dataset_size=dataset_size)
  if eps(bounds[1]) > target_epsilon:
    raise ConfigError(
        f"config.privacy.target_epsilon={target_epsilon} is not reachable with "
        f"noise_multiplier <= {bounds[1]} (q={sampling_rate}, steps={steps}, delta={delta})")
  lo, hi = bounds
  if accountant == "pld":
    # PLD is slow at small sigma; RDP's answer is an upper bound and PLD's is close below it.
    hi = calibrate_noise_multiplier(target_epsilon=target_epsilon, sampling_rate=sampling_rate,
                                    steps=steps, delta=delta, accountant="rdp",
                                    sampling=sampling, dataset_size=dataset_size,
                                    bounds=bounds, tol=tol)
    lo = max(bounds[0], 0.5 * hi)
  if eps(lo) <= target_epsilon:
    return float(lo)
  import dp_accounting  # pylint: disable=g-import-not-at-top,redefined-outer-name
  sigma = dp_accounting.calibrate_dp_mechanism(
      lambda: make_accountant(accountant, sampling),
      lambda s: dpsgd_event(noise_multiplier=s, sampling_rate=sampling_rate, steps=steps,
                            sampling=sampling, dataset_size=dataset_size),
      target_epsilon, delta,
      bracket_interval=dp_accounting.ExplicitBracketInterval(lo, hi), tol=tol)
  return float(sigma)
