"""EPIC (Yang, Gao, Mirzasoleiman, ICML 2022): drop the examples isolated in gradient space.

Effective poisons sit in low-density regions of the last-layer gradient space. At selected
epochs EPIC covers each class's gradient proxies with facility-location medoids (the CRAIG
greedy of `selection/facility_location.py`), assigns every example to its nearest medoid, and
drops the members of clusters with at most `cluster_threshold` examples (a medoid alone in its
cluster, by default); training continues on the rest until the next selection. Registered as
data policy `epic`, so it composes with any trainer that takes one (the poisoning victim).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from robustdata.data.policies import EpochPolicy, PolicyContext, batches_of
from robustdata.registry import POLICIES, ConfigError
from robustdata.selection.facility_location import facility_location
from robustdata.selection.policies import check_finite

# Rows of distances computed at a time when assigning examples to medoids (memory bound).
ASSIGN_ROWS = 4096


def assign_to_medoids(proxies: np.ndarray, labels: np.ndarray,
                      medoids: np.ndarray) -> np.ndarray:
  """Position in `medoids` of each example's nearest medoid of its own class (float64
  Euclidean distance, ties to the earlier position); -1 for a class without a medoid."""
  x = np.asarray(proxies, np.float64).reshape(len(proxies), -1)
  labels, medoids = np.asarray(labels), np.asarray(medoids, np.int64)
  assign = np.full(len(x), -1, np.int64)
  for c in np.unique(labels):
    pos = np.flatnonzero(labels[medoids] == c)
    if not len(pos):
      continue
    centres = x[medoids[pos]]
    rows = np.flatnonzero(labels == c)
    for s in range(0, len(rows), ASSIGN_ROWS):
      block = x[rows[s:s + ASSIGN_ROWS]]
      d2 = (np.sum(block**2, axis=1)[:, None] + np.sum(centres**2, axis=1)[None, :]
            - 2.0 * block @ centres.T)
      assign[rows[s:s + ASSIGN_ROWS]] = pos[np.argmin(d2, axis=1)]
  return assign


def epic_clusters(proxies: np.ndarray, labels: np.ndarray, *, subset_fraction: float,
                  kernel: str = "craig", equal_num: bool = False, method: str = "auto",
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(medoids, cluster sizes, each example's position in medoids) of the per-class FL
  selection of round(subset_fraction * n) medoids (class-proportional budgets unless
  `equal_num`, the reference's default)."""
  check_fraction(subset_fraction, "subset_fraction")
  proxies = np.asarray(proxies)
  proxies = proxies.reshape(len(proxies), -1)
  budget = max(1, int(round(subset_fraction * len(proxies))))
  medoids, _ = facility_location(proxies, np.asarray(labels), budget=budget, kernel=kernel,
                                 equal_num=equal_num, method=method, seed=seed)
  assign = assign_to_medoids(proxies, labels, medoids)
  sizes = np.bincount(assign[assign >= 0], minlength=len(medoids))
  return medoids, sizes, assign


def isolated_points(proxies: np.ndarray, labels: np.ndarray, *, subset_fraction: float,
                    cluster_threshold: int = 1, kernel: str = "craig", equal_num: bool = False,
                    method: str = "auto", seed: int = 0) -> np.ndarray:
  """Sorted indices of the examples EPIC drops: the members of the medoid clusters with at most
  `cluster_threshold` examples (see `epic_clusters` for the selection)."""
  if (isinstance(cluster_threshold, bool) or not isinstance(cluster_threshold, (int, np.integer))
      or cluster_threshold < 1):
    raise ConfigError(f"cluster_threshold={cluster_threshold!r} must be an integer >= 1")
  _, sizes, assign = epic_clusters(proxies, labels, subset_fraction=subset_fraction,
                                   kernel=kernel, equal_num=equal_num, method=method, seed=seed)
  return np.flatnonzero((assign >= 0) & (sizes[np.maximum(assign, 0)] <= cluster_threshold))


def check_fraction(value: Any, field: str) -> None:
  """ConfigError naming `field` unless value is a finite number in (0, 1]."""
  ok = (isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
        and math.isfinite(value) and 0.0 < value <= 1.0)
  if not ok:
    raise ConfigError(f"{field}={value!r} is not allowed: a fraction of the train split in "
                      "(0, 1]")


@POLICIES.register("epic")
class Epic(EpochPolicy):
  """Every `epic_every` epochs from `epic_start_epoch` (to `epic_stop_epoch`, -1: the last),
  selects `subset_fraction` * N medoids on the gradient proxies of the whole train split and
  drops the isolated examples (`isolated_points`); epochs train on the rest, shuffled, weight 1.
  `cumulative`: an example once dropped stays out (the reference trains only on the examples
  kept at every selection); else each selection replaces the last one's drop set."""

  DEFAULTS = {
      "subset_fraction": 0.2,  # medoids per selection / train size (the reference's transfer)
      "epic_every": 1,         # reselect every this many epochs
      "epic_start_epoch": 1,   # first epoch with a selection (earlier ones use all data)
      "epic_stop_epoch": -1,   # last epoch with a selection (-1: no last)
      "cluster_threshold": 1,  # clusters of at most this many examples are dropped
      "equal_num": False,      # equal per-class medoid budgets (else class-proportional)
      "kernel": "craig",       # FL similarity: 'craig' (max d - d_ij) or 'exp'
      "method": "auto",        # FL greedy: auto/dense/lazy_dense/lazy/stochastic/greedi
      "cumulative": True,      # dropped examples never return
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    cfg = self.cfg
    check_fraction(cfg.subset_fraction, "config.policy.subset_fraction")
    for field, low in (("epic_every", 1), ("epic_start_epoch", 0), ("epic_stop_epoch", -1),
                       ("cluster_threshold", 1)):
      value = cfg[field]
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"config.policy.{field}={value!r} is not allowed: an integer >= {low}")
    self.excluded = np.zeros(len(self.train), bool)
    self.last_dropped = np.zeros(0, np.int64)
    self.selections = 0
    self.selection_time_s = 0.0

  def _due(self, epoch: int) -> bool:
    cfg = self.cfg
    return (epoch >= cfg.epic_start_epoch and (epoch - cfg.epic_start_epoch) % cfg.epic_every == 0
            and (cfg.epic_stop_epoch < 0 or epoch <= cfg.epic_stop_epoch))

  def select(self, ctx: PolicyContext) -> None:
    """Probes the proxies of the whole train split and updates the drop set."""
    start = time.perf_counter()
    everything = np.arange(len(self.train))
    proxies = np.asarray(ctx.probe("proxy", everything))
    self.examples_probed += len(everything)
    check_finite(proxies, f"epic at epoch {ctx.epoch}")
    cfg = self.cfg
    drop = isolated_points(proxies, np.asarray(self.train.y),
                           subset_fraction=cfg.subset_fraction,
                           cluster_threshold=int(cfg.cluster_threshold), kernel=cfg.kernel,
                           equal_num=cfg.equal_num, method=cfg.method,
                           seed=int(self.rng.integers(2**31)))
    if not cfg.cumulative:
      self.excluded[:] = False
    self.excluded[drop] = True
    if self.excluded.all():
      raise ConfigError(f"policy 'epic' dropped every example by epoch {ctx.epoch}; lower "
                        "config.policy.subset_fraction or config.policy.cluster_threshold")
    self.last_dropped = drop
    self.selections += 1
    self.selection_time_s += time.perf_counter() - start

  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    if self._due(ctx.epoch):
      self.select(ctx)
    keep = np.flatnonzero(~self.excluded)
    return batches_of(keep[self.rng.permutation(len(keep))], self.batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "excluded": np.flatnonzero(self.excluded).tolist(),
            "last_dropped": self.last_dropped.tolist(), "selections": self.selections,
            "selection_time_s": self.selection_time_s}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.excluded[:] = False
    self.excluded[np.asarray(state["excluded"], np.int64)] = True
    self.last_dropped = np.asarray(state["last_dropped"], np.int64)
    self.selections = int(state["selections"])
    self.selection_time_s = float(state["selection_time_s"])

  def results(self) -> dict[str, Any]:
    return {"epic_dropped": int(len(self.last_dropped)),
            "epic_excluded": int(self.excluded.sum()), "epic_selections": self.selections,
            "selection_time_s": self.selection_time_s}

  def finalize(self, run_ctx) -> dict[str, Any]:
    """With an upstream crafting stage (the poisoning victim): how many of its poisons the last
    selection dropped and how many are excluded at the end."""
    if "poisons" not in run_ctx.config:
      return {}
    from robustdata import runner  # pylint: disable=g-import-not-at-top
    from robustdata.poisoning import artifact as artifact_lib  # pylint: disable=g-import-not-at-top
    directory = runner.stage_dir(run_ctx.config, "poisons", run_ctx.run_dir)
    if not os.path.exists(os.path.join(directory, artifact_lib.NPZ_NAME)):
      return {}
    poisons = artifact_lib.PoisonArtifact.load(directory).base_indices
    return {"epic_poisons_dropped": int(np.isin(self.last_dropped, poisons).sum()),
            "epic_poisons_excluded": int(self.excluded[np.asarray(poisons, np.int64)].sum())}
