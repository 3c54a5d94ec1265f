"""Coresets for data-efficient augmentation (spec §3): strong augmentation on a coreset only.

Every `refresh_every` epochs the policy picks the augmented part A (an FL coreset of
`fraction` N on un-augmented gradient proxies, a random subset of that size, or all data);
each epoch serves the main part M (all data with weight 1, the coreset with its weights, or a
random subset of the coreset's size) plus A as strongly augmented copies.

How strongly augmented rows reach the step without touching the loader or the step: the policy
extends the train `Dataset` it shares with the loader by |A| slot rows (once, at its first
epoch, after the loop has sized everything else from the real N). At each epoch start it writes
a fresh seeded RandAugment of the A images into the slots (key = fold_in(seed, epoch)) and
serves slot indices N..N+|A|-1 for A. The step then applies config.data.augment (weak) to every
row as usual. Probes only ever see indices < N. The slots are a pure function of (A, epoch), so
`load_state_dict` rewrites them and a resume stays bitwise.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import numpy as np

from robustdata.data import records, strong_augment
from robustdata.data.dataset import Dataset
from robustdata.data.policies import EpochPolicy, PolicyContext, batches_of
from robustdata.registry import POLICIES, ConfigError
from robustdata.selection.facility_location import (class_budgets, facility_location,
                                                    normalize_weights)

SELECTIONS = ("coreset", "random", "full")
MAINS = ("full", "coreset", "random", "none")


def extend_with_slots(train: Dataset, base: int, slots: int) -> None:
  """Grows every per-example array of `train` (in place) to `base + slots` rows; the new rows
  copy row 0 until written. Idempotent for the same sizes."""
  if len(train) == base + slots:
    return
  if len(train) != base:
    raise ValueError(f"train split has {len(train)} rows; expected {base} or {base + slots}")
  pad = np.zeros(slots, np.int64)
  x = np.asarray(train.x)  # a lazy split below records.MATERIALIZE_LIMIT_BYTES (checked at init)
  train.x = np.concatenate([x, x[pad]])
  train.y = np.concatenate([train.y, train.y[pad]])
  train.ids = np.concatenate([train.ids, -1 - np.arange(slots, dtype=train.ids.dtype)])
  if train.groups is not None:
    train.groups = np.concatenate([train.groups, train.groups[pad]])
  if train.spurious is not None:
    train.spurious = np.concatenate([train.spurious, train.spurious[pad]])
  train.extras = {k: np.concatenate([v, v[pad]]) for k, v in train.extras.items()}


@POLICIES.register("augment_coreset")
class AugmentCoreset(EpochPolicy):
  """M ∪ A per epoch: M per `main`, A = `selection` rows strongly augmented (RandAugment)."""

  rewrites_train = True  # the slots of A are written into the split every epoch

  DEFAULTS = {
      "fraction": 0.1,          # s: |A| = s N (coreset or random); 'full' augments all N
      "refresh_every": 5,       # R: reselect A every R epochs
      "selection": "coreset",   # coreset | random | full: which examples are strongly augmented
      "main": "full",           # full | coreset | random | none: the un-augmented part M
      "augment_weights": False,  # A rows carry the coreset weights (else weight 1)
      "kernel": "exp",          # FL similarity ('exp' = submodlib, DEA's) or 'craig'
      "equal_num": True,
      "method": "auto",
      "use_linear": False,      # proxy ⊗ features (DEA's --use_linear)
      "num_ops": 2,             # RandAugment ops per image
      "magnitude": 0.5,         # RandAugment strength in [0, 1]
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    cfg = self.cfg
    self.n = len(self.train)
    if cfg.selection not in SELECTIONS:
      raise ConfigError(f"config.policy.selection={cfg.selection!r}; allowed: {list(SELECTIONS)}")
    if cfg.main not in MAINS:
      raise ConfigError(f"config.policy.main={cfg.main!r}; allowed: {list(MAINS)}")
    if not 0.0 < cfg.fraction <= 1.0:
      raise ConfigError(f"config.policy.fraction={cfg.fraction} must be in (0, 1]")
    if isinstance(cfg.refresh_every, bool) or not isinstance(cfg.refresh_every, int) or (
        cfg.refresh_every <= 0):
      raise ConfigError(f"config.policy.refresh_every={cfg.refresh_every!r} must be a positive "
                        "integer")
    if not isinstance(cfg.num_ops, int) or cfg.num_ops <= 0 or not 0.0 <= cfg.magnitude <= 1.0:
      raise ConfigError(f"config.policy.num_ops={cfg.num_ops!r} must be a positive integer and "
                        f"magnitude={cfg.magnitude} in [0, 1]")
    if cfg.main == "coreset" and cfg.selection != "coreset":
      raise ConfigError("config.policy.main='coreset' needs selection='coreset'")
    x = self.train.x
    if records.is_lazy(x) and x.nbytes > records.MATERIALIZE_LIMIT_BYTES:
      data = self.config.get("data") or {}
      raise ConfigError(
          f"config.policy.name='augment_coreset' writes strongly augmented copies beside the "
          f"whole train split in host memory, but config.data.name={data.get('name')!r} is read "
          f"lazily and its train split ({x.shape} {x.dtype}, {x.nbytes / 2**30:.1f} GiB) is "
          f"above records.MATERIALIZE_LIMIT_BYTES ({records.MATERIALIZE_LIMIT_BYTES / 2**30:.1f} "
          "GiB); use a smaller split or a policy that reads rows by index (e.g. 'craig')")
    self.budget = max(1, int(round(cfg.fraction * self.n)))
    counts = np.bincount(np.asarray(self.train.y), minlength=self.num_classes)
    if cfg.selection == "full":
      self.slots = self.n
    elif cfg.selection == "coreset":
      self.slots = int(class_budgets(counts[counts > 0], self.budget,
                                     equal_num=cfg.equal_num).sum())
    else:
      self.slots = self.budget
    self.augmented = np.zeros(0, np.int64)    # A (indices < n)
    self.augmented_weights = np.zeros(0, np.float32)
    self.selected_epoch = -1
    self.slot_epoch = -1
    self.aug_seed = int(self.rng.integers(2**31))
    self.selection_time_s = 0.0
    self.augment_time_s = 0.0

  def _due(self, epoch: int) -> bool:
    return self.selected_epoch < 0 or epoch % self.cfg.refresh_every == 0

  def select(self, ctx: PolicyContext) -> None:
    start = time.perf_counter()
    cfg, everything = self.cfg, np.arange(self.n)
    if cfg.selection == "full":
      self.augmented, self.augmented_weights = everything, np.ones(self.n, np.float32)
    elif cfg.selection == "random":
      self.augmented = np.sort(self.rng.choice(self.n, size=self.budget, replace=False))
      self.augmented_weights = np.ones(self.budget, np.float32)
    else:
      proxies = np.asarray(ctx.probe("proxy_linear" if cfg.use_linear else "proxy", everything))
      self.examples_probed += self.n
      if not np.all(np.isfinite(proxies)):
        raise FloatingPointError(f"augment_coreset at epoch {ctx.epoch}: gradient proxies are "
                                 "not finite (the model diverged)")
      idx, w = facility_location(proxies, np.asarray(self.train.y)[:self.n], budget=self.budget,
                                 kernel=cfg.kernel, equal_num=cfg.equal_num, method=cfg.method,
                                 seed=int(self.rng.integers(2**31)))
      self.augmented, self.augmented_weights = idx, normalize_weights(w)
    self.selected_epoch = ctx.epoch
    self.selection_time_s += time.perf_counter() - start

  def write_slots(self, epoch: int) -> None:
    """Slots 0..|A|-1 <- RandAugment of the A images with key fold_in(seed, epoch)."""
    start = time.perf_counter()
    extend_with_slots(self.train, self.n, self.slots)
    key = jax.random.fold_in(jax.random.PRNGKey(self.aug_seed), epoch)
    k = len(self.augmented)
    for lo in range(0, k, 1024):  # bounded device memory for large A
      part = self.augmented[lo:lo + 1024]
      images = strong_augment.rand_augment(jax.random.fold_in(key, lo), self.train.x[part],
                                           num_ops=self.cfg.num_ops,
                                           magnitude=self.cfg.magnitude)
      self.train.x[self.n + lo:self.n + lo + len(part)] = np.asarray(images, self.train.x.dtype)
    self.train.y[self.n:self.n + k] = self.train.y[self.augmented]
    self.slot_epoch = epoch
    self.augment_time_s += time.perf_counter() - start

  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    if self._due(ctx.epoch):
      self.select(ctx)
    self.write_slots(ctx.epoch)
    cfg, k = self.cfg, len(self.augmented)
    if cfg.main == "full":
      main, main_w = np.arange(self.n), np.ones(self.n, np.float32)
    elif cfg.main == "coreset":
      main, main_w = self.augmented, self.augmented_weights
    elif cfg.main == "random":
      main = self.rng.choice(self.n, size=k, replace=False)
      main_w = np.ones(k, np.float32)
    else:
      main, main_w = np.zeros(0, np.int64), np.zeros(0, np.float32)
    aug_w = self.augmented_weights if cfg.augment_weights else np.ones(k, np.float32)
    rows = np.concatenate([main, self.n + np.arange(k)])
    weights = np.concatenate([main_w, aug_w]).astype(np.float32)
    order = self.rng.permutation(len(rows))
    return batches_of(rows[order], self.batch_size, weights[order])

  def expected_steps_per_epoch(self) -> int:
    main = {"full": self.n, "coreset": self.slots, "random": self.slots, "none": 0}[self.cfg.main]
    return math.ceil((main + self.slots) / self.batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "augmented": self.augmented.tolist(),
            "augmented_weights": self.augmented_weights.tolist(),
            "selected_epoch": self.selected_epoch, "slot_epoch": self.slot_epoch,
            "selection_time_s": self.selection_time_s, "augment_time_s": self.augment_time_s}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.augmented = np.asarray(state["augmented"], np.int64)
    self.augmented_weights = np.asarray(state["augmented_weights"], np.float32)
    self.selected_epoch = int(state["selected_epoch"])
    self.selection_time_s = float(state["selection_time_s"])
    augment_time = float(state["augment_time_s"])
    if int(state["slot_epoch"]) >= 0:  # the slots are a pure function of (A, epoch)
      self.write_slots(int(state["slot_epoch"]))
    self.augment_time_s = augment_time

  def results(self) -> dict[str, Any]:
    return {"selection_time_s": self.selection_time_s, "augment_time_s": self.augment_time_s,
            "augmented_size": int(len(self.augmented))}
