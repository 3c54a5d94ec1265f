"""Selection data policies: CRAIG weighted coresets (spec §2), proxy-norm ordering (spec §7)
and a fixed order; importing this module also registers CREST (`crest.py`), augmentation
coresets (`augment_coreset.py`) and GraB ordering (`grab.py`).

CRAIG and the ordering policies see the model only through `ctx.probe('proxy' |
'proxy_linear', indices)` (softmax - onehot, un-augmented, eval mode), which fixes the reference
code's use of augmented views.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import numpy as np

from robustdata.data.policies import EpochPolicy, PolicyContext, batches_of
from robustdata.registry import POLICIES, ConfigError
from robustdata.selection.facility_location import facility_location, normalize_weights
from robustdata.selection.similarity import SimilarityWorkspace


@POLICIES.register("craig")
class Craig(EpochPolicy):
  """CRAIG: every `lag` epochs from `start_epoch`, a per-class weighted FL coreset of
  `fraction` * N examples on gradient proxies; epochs train on it with mean-1 weights
  (shuffled, or in greedy round-robin order with shuffle=False as in CRAIG's MNIST code).
  Before `start_epoch` epochs use all data with weight 1."""

  DEFAULTS = {
      "fraction": 0.1,       # coreset size as a fraction of the train split
      "lag": 1,              # reselect every `lag` epochs
      "start_epoch": 0,      # first epoch trained on a coreset
      "kernel": "craig",     # 'craig' (max d - d_ij) or 'exp' (exp(-d_ij / D), submodlib)
      "equal_num": True,     # equal per-class budgets (else class-proportional)
      "method": "auto",      # FL greedy: auto/dense/lazy_dense/lazy/stochastic/greedi
      "use_linear": False,   # proxy (softmax - onehot) ⊗ features (DEA's --use_linear)
      "shuffle": True,       # shuffle the coreset each epoch
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not 0.0 < self.cfg.fraction <= 1.0:
      raise ConfigError(f"config.policy.fraction={self.cfg.fraction} must be in (0, 1]")
    if not isinstance(self.cfg.lag, int) or self.cfg.lag <= 0:
      raise ConfigError(f"config.policy.lag={self.cfg.lag!r} must be a positive integer")
    if self.cfg.start_epoch < 0:
      raise ConfigError(f"config.policy.start_epoch={self.cfg.start_epoch} must be >= 0")
    self.size = max(1, int(round(self.cfg.fraction * len(self.train))))
    self.subset = np.zeros(0, np.int64)
    self.subset_weights = np.zeros(0, np.float32)
    self.selected_epoch = -1
    self.ever_selected = np.zeros(len(self.train), bool)
    self.selection_time_s = 0.0
    # Reselections write the dense methods' similarity into the previous one's memory, which
    # saves its page faults on CPU; on accelerators the allocator already reuses memory and a
    # held n x n matrix would only take device memory from training.
    self.workspace = SimilarityWorkspace() if jax.default_backend() == "cpu" else None

  def _due(self, epoch: int) -> bool:
    return epoch >= self.cfg.start_epoch and (epoch - self.cfg.start_epoch) % self.cfg.lag == 0

  def select(self, ctx: PolicyContext) -> None:
    """Probes proxies on the whole train split and selects the weighted coreset."""
    start = time.perf_counter()
    everything = np.arange(len(self.train))
    proxies = ctx.probe("proxy_linear" if self.cfg.use_linear else "proxy", everything)
    self.examples_probed += len(everything)
    check_finite(proxies, f"craig at epoch {ctx.epoch}")
    indices, weights = facility_location(
        np.asarray(proxies), np.asarray(self.train.y), budget=self.size, kernel=self.cfg.kernel,
        equal_num=self.cfg.equal_num, method=self.cfg.method,
        seed=int(self.rng.integers(2**31)), workspace=self.workspace)
    self.subset, self.subset_weights = indices, normalize_weights(weights)
    self.selected_epoch = ctx.epoch
    self.ever_selected[indices] = True
    self.selection_time_s += time.perf_counter() - start

  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    if ctx.epoch < self.cfg.start_epoch:
      return batches_of(self.rng.permutation(len(self.train)), self.batch_size)
    if self._due(ctx.epoch) or self.selected_epoch < 0:
      self.select(ctx)
    order = self.rng.permutation(len(self.subset)) if self.cfg.shuffle else np.arange(
        len(self.subset))
    return batches_of(self.subset[order], self.batch_size, self.subset_weights[order])

  def expected_steps_per_epoch(self) -> int:
    return math.ceil(self.size / self.batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "subset": self.subset.tolist(),
            "subset_weights": self.subset_weights.tolist(), "selected_epoch": self.selected_epoch,
            "ever_selected": np.flatnonzero(self.ever_selected).tolist(),
            "selection_time_s": self.selection_time_s}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.subset = np.asarray(state["subset"], np.int64)
    self.subset_weights = np.asarray(state["subset_weights"], np.float32)
    self.selected_epoch = int(state["selected_epoch"])
    self.ever_selected[:] = False
    self.ever_selected[np.asarray(state["ever_selected"], np.int64)] = True
    self.selection_time_s = float(state["selection_time_s"])

  def results(self) -> dict[str, Any]:
    return {"selection_time_s": self.selection_time_s,
            "never_selected_fraction": float(1.0 - self.ever_selected.mean())}


@POLICIES.register("ordering")
class ProxyNormOrdering(EpochPolicy):
  """Without-replacement epochs ordered by start-of-epoch gradient-proxy norms (spec §7),
  ascending or descending. `blocks='examples'`: sort the examples by ||g_i|| (ties: lower index
  first) and cut consecutive batches; `blocks='batches'`: cut a random permutation into
  batches and order the batches by their block-gradient norm ||mean_{i in B} g_i||."""

  DEFAULTS = {
      "ascending": True,     # smallest norm first (False: largest first)
      "use_linear": False,   # norm of the last-linear-layer gradient instead of softmax - onehot
      "blocks": "examples",  # what is ordered: 'examples' (then cut) or random 'batches'
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.cfg.blocks not in ("examples", "batches"):
      raise ConfigError(f"config.policy.blocks={self.cfg.blocks!r}; allowed: 'examples', "
                        "'batches'")
    self.selection_time_s = 0.0

  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    start = time.perf_counter()
    everything = np.arange(len(self.train))
    proxies = ctx.probe("proxy_linear" if self.cfg.use_linear else "proxy", everything)
    self.examples_probed += len(everything)
    check_finite(proxies, f"ordering at epoch {ctx.epoch}")
    proxies = np.asarray(proxies, np.float64).reshape(len(everything), -1)
    sign = 1.0 if self.cfg.ascending else -1.0
    if self.cfg.blocks == "examples":
      order = np.argsort(sign * np.linalg.norm(proxies, axis=1), kind="stable")
      plan = batches_of(order, self.batch_size)
    else:
      plan = batches_of(self.rng.permutation(len(everything)), self.batch_size)
      norms = [np.linalg.norm(proxies[idx].mean(axis=0)) for idx, _ in plan]
      plan = [plan[i] for i in np.argsort(sign * np.asarray(norms), kind="stable")]
    self.selection_time_s += time.perf_counter() - start
    return plan

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "selection_time_s": self.selection_time_s}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.selection_time_s = float(state.get("selection_time_s", 0.0))

  def results(self) -> dict[str, Any]:
    return {"selection_time_s": self.selection_time_s,
            "classes_per_batch": classes_per_batch(self.plan_indices, self.train.y)}


@POLICIES.register("fixed_order")
class FixedOrder(EpochPolicy):
  """One random permutation, drawn at the first epoch and reused by every epoch (the convex
  study's `fixed` ordering); batches are its consecutive blocks."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.order = np.zeros(0, np.int64)

  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(self.order) == 0:
      self.order = self.rng.permutation(len(self.train))
    return batches_of(self.order, self.batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "order": self.order.tolist()}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.order = np.asarray(state["order"], np.int64)

  def results(self) -> dict[str, Any]:
    return {"classes_per_batch": classes_per_batch(self.plan_indices, self.train.y)}


def classes_per_batch(batches: list[np.ndarray], labels: np.ndarray) -> float:
  """The mean number of distinct labels in a plan's batches (about 1 when an order runs class
  by class; near min(b, classes) for random batches of b); NaN for an empty plan."""
  labels = np.asarray(labels)
  counts = [len(np.unique(labels[np.asarray(b, np.int64)])) for b in batches if len(b)]
  return float(np.mean(counts)) if counts else float("nan")


def check_finite(proxies: np.ndarray, where: str) -> None:
  """Raises FloatingPointError (naming the caller) when gradient proxies hold NaN or inf."""
  if not np.all(np.isfinite(np.asarray(proxies))):
    raise FloatingPointError(f"{where}: the gradient proxies are not finite (the model "
                             "diverged); lower config.optim.learning_rate")


# The other selection policies register on import of this module (listed in PLUGIN_MODULES).
from robustdata.selection import augment_coreset, crest, grab, synthetic  # noqa: E402,F401  pylint: disable=g-import-not-at-top,wrong-import-position
