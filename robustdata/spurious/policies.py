"""Group-robustness data policies: up-/down-sampling, class- or group-balanced batches, SPARE's
importance sampling, PDE, JTT's two stages, Correct-n-Contrast's contrastive batches and
full-batch gradient descent.

`upsample`, `downsample`, `group_balanced`, `spare`, `pde` and `cnc` need group labels on the
train split (`Dataset.groups`) and say so with a ConfigError when the policy is built. Every
policy here reports the PDE paper's filter alignment on `pde_synthetic` (see `alignment.py`).
"""

from __future__ import annotations

import abc
import math
from typing import Any, Optional

import numpy as np

from robustdata.data.policies import EpochPolicy, PolicyContext, batches_of
from robustdata.registry import POLICIES, ConfigError
from robustdata.spurious import cnc
from robustdata.spurious import group_source
from robustdata.spurious import groups as group_utils
from robustdata.spurious import jtt
from robustdata.spurious import pde
from robustdata.spurious import spare
from robustdata.spurious.alignment import ReportsAlignment


def _train_groups(policy: EpochPolicy) -> np.ndarray:
  if policy.train.groups is None or policy.num_groups <= 0:
    data = policy.config.get("data", None)
    source = f"config.data.name={data.get('name', '')!r} has none" if data is not None else (
        "the train split has none")
    raise ConfigError(f"config.policy.name={policy.config.policy.name!r} needs group labels on "
                      f"the train split and {source}; use a source with groups (e.g. "
                      "'spuco_digits', 'pde_synthetic', 'group_folders') or a policy without "
                      "groups ('full', 'class_balanced', 'jtt')")
  return policy.train.groups


class _GroupPolicy(ReportsAlignment, EpochPolicy):
  """An epoch policy that needs group labels; checks for them when built."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    _train_groups(self)


@POLICIES.register("upsample")
class UpSample(_GroupPolicy):
  """Every group repeated to the largest group's size each epoch (SpuCo's UpSampleERM)."""

  def plan_epoch(self, ctx):
    idx = group_utils.upsample_indices(_train_groups(self), num_groups=self.num_groups,
                                       rng=self.rng)
    return batches_of(idx, self.batch_size)

  def expected_steps_per_epoch(self) -> int:
    counts = group_utils.group_counts(_train_groups(self), num_groups=self.num_groups)
    return math.ceil(int(counts.max()) * int((counts > 0).sum()) / self.batch_size)


@POLICIES.register("downsample")
class DownSample(_GroupPolicy):
  """A fresh subsample of every group to the smallest group's size each epoch
  (SpuCo's DownSampleERM)."""

  def plan_epoch(self, ctx):
    idx = group_utils.downsample_indices(_train_groups(self), num_groups=self.num_groups,
                                         rng=self.rng)
    return batches_of(idx, self.batch_size)

  def expected_steps_per_epoch(self) -> int:
    counts = group_utils.group_counts(_train_groups(self), num_groups=self.num_groups)
    return math.ceil(int(counts[counts > 0].min()) * int((counts > 0).sum()) / self.batch_size)


class _BalancedBatches(ReportsAlignment, EpochPolicy):
  """len(train) / batch_size batches per epoch, drawn with replacement so that each label value
  is equally likely."""

  @abc.abstractmethod
  def labels(self) -> tuple[np.ndarray, int]:
    """The per-example label to balance (class or group) and its number of values."""

  def plan_epoch(self, ctx):
    labels, num_labels = self.labels()
    steps = self.expected_steps_per_epoch()
    batches = group_utils.balanced_batches(labels, num_labels=num_labels,
                                           batch_size=self.batch_size, num_batches=steps,
                                           rng=self.rng)
    return [(b, np.ones(len(b), np.float32)) for b in batches]


@POLICIES.register("group_balanced")
class GroupBalanced(_BalancedBatches):
  """Group-balanced batches (SpuCo's GroupBalanceBatchERM; GroupDRO's sampler)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    _train_groups(self)

  def labels(self):
    return _train_groups(self), self.num_groups


@POLICIES.register("class_balanced")
class ClassBalanced(_BalancedBatches):
  """Class-balanced batches (SpuCo's ClassBalanceBatchERM)."""

  def labels(self):
    return self.train.y, self.num_classes


@POLICIES.register("spare")
class SpareSampling(_GroupPolicy):
  """SPARE's importance sampling (SpuCo's SpareTrain): len(train) examples per epoch drawn with
  replacement, p_i proportional to |group_i|^(-power) within each class, every class the same
  total (`robustdata.spurious.spare`).

  The power of class c: the per-class powers of a SPARE inference stage (`config.group_stage`
  with inference method 'spare') when `inferred_powers` is True and the stage wrote them, else
  `sampling_power` for every class.
  """

  DEFAULTS = {"sampling_power": 1.0, "inferred_powers": True}

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    power = self.cfg.sampling_power
    if isinstance(power, bool) or not isinstance(power, (int, float)) or power < 0:
      raise ConfigError(f"config.policy.sampling_power={power!r} must be a number >= 0")
    self.powers = np.full(self.num_classes, float(power))
    inferred = self.train.extras.get(group_source.SAMPLING_POWER)
    if self.cfg.inferred_powers and inferred is not None:
      for c in np.unique(self.train.y):
        self.powers[c] = float(inferred[np.flatnonzero(self.train.y == c)[0]])
    self.probabilities = spare.sampling_probabilities(self.train.y, _train_groups(self),
                                                      self.powers)

  def plan_epoch(self, ctx):
    idx = spare.sample_indices(self.probabilities, len(self.train), rng=self.rng)
    return batches_of(idx, self.batch_size)

  def results(self) -> dict[str, Any]:
    return {"spare_sampling_powers": self.powers.tolist()}


@POLICIES.register("cnc")
class CorrectNContrastBatches(_GroupPolicy):
  """Correct-n-Contrast's batches (`robustdata.spurious.cnc.plan_batches`): each batch holds
  anchors of one class c with c's majority spurious attribute m_c (config.train.batch_size -
  num_positives - num_negatives of them), `num_positives` class-c examples with another
  attribute and `num_negatives` other-class examples with attribute m_c; an epoch serves every
  anchor once. The attribute: the inferred one with `config.group_stage` (inference method
  'cnc': the ERM reference's predicted class, so the anchors are the examples it classifies
  correctly), else the annotated one. Classes without positives or negatives give no anchors.

  Defaults 32 / 32 (with a batch of 96: 32 anchors) are the Correct-n-Contrast code's
  num_anchor / num_positive / num_negative; that code contrasts one anchor per such batch and
  accumulates 32 of them per update, here every anchor of the batch is contrasted.
  """

  DEFAULTS = {"num_positives": 32, "num_negatives": 32}

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    cfg = self.cfg
    for field in ("num_positives", "num_negatives"):
      value = cfg[field]
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config.policy.{field}={value!r} must be an int >= 1")
    self.num_anchors = self.batch_size - int(cfg.num_positives) - int(cfg.num_negatives)
    if self.num_anchors < 1:
      raise ConfigError(
          f"config.policy.num_positives={cfg.num_positives} + config.policy.num_negatives="
          f"{cfg.num_negatives} leave no anchors in a batch of config.train.batch_size="
          f"{self.batch_size}; allowed: num_positives + num_negatives < batch_size")
    attribute = group_source.spurious_attribute(self.config, self.train,
                                                who="config.policy.name='cnc'")
    self.pools = cnc.contrastive_pools(self.train.y, attribute, num_classes=self.num_classes)
    if not cnc.usable_classes(self.pools):
      raise ConfigError(
          "config.policy.name='cnc': no class has both positives (its examples with another "
          "spurious attribute than the class's majority) and negatives (other classes' examples "
          "with that attribute); the (inferred) attribute gives nothing to contrast")

  def plan_epoch(self, ctx):
    batches = cnc.plan_batches(self.pools, num_anchors=self.num_anchors,
                               num_positives=int(self.cfg.num_positives),
                               num_negatives=int(self.cfg.num_negatives), rng=self.rng)
    return [(b, np.ones(len(b), np.float32)) for b in batches]

  def expected_steps_per_epoch(self) -> int:
    return cnc.steps_per_epoch(self.pools, num_anchors=self.num_anchors)

  def results(self) -> dict[str, Any]:
    usable = cnc.usable_classes(self.pools)
    return {"cnc_anchor_classes": usable,
            "cnc_anchors": int(sum(len(self.pools[c][0]) for c in usable)),
            "cnc_positive_pool_sizes": [int(len(p)) for _, p, _ in self.pools],
            "cnc_negative_pool_sizes": [int(len(n)) for _, _, n in self.pools]}


@POLICIES.register("pde")
class ProgressiveDataExpansion(ReportsAlignment, EpochPolicy):
  """PDE: train on a group-balanced warm-up subset, then add `add_num` unused examples at
  epochs add_start, add_start + add_interval, ... (see `robustdata.spurious.pde`).

  add_num <= 0 spreads the unused examples evenly over the milestones up to `num_epochs`
  (then required). `same_across_class` rebuilds the subset at add_start per spurious attribute
  (CelebA). The LR drop at add_start belongs to the optimizer schedule, not to this policy.
  """

  DEFAULTS = {"add_start": 15, "add_interval": 10, "add_num": 10, "subsample_cap": 1,
              "with_replacement": False, "uniform_add": False, "same_across_class": False,
              "num_epochs": 0}

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    groups = _train_groups(self)
    cfg = self.cfg
    if cfg.add_interval <= 0:
      raise ConfigError(f"config.policy.add_interval={cfg.add_interval} must be positive")
    if cfg.add_num <= 0 and cfg.num_epochs <= 0:
      raise ConfigError("config.policy.add_num <= 0 (spread the rest over the milestones) "
                        "needs config.policy.num_epochs > 0")
    if cfg.same_across_class and self.train.spurious is None:
      raise ConfigError("config.policy.same_across_class needs the spurious attribute on the "
                        "train split")
    self.subset = pde.warmup_indices(self.train.y, groups, rng=self.rng,
                                     subsample_cap=int(cfg.subsample_cap))
    self.last_milestone = -1

  def _is_milestone(self, epoch: int) -> bool:
    start, interval = int(self.cfg.add_start), int(self.cfg.add_interval)
    if start < 0 or epoch < start or (epoch - start) % interval:
      return False
    return self.cfg.num_epochs <= 0 or epoch < self.cfg.num_epochs

  def _expand(self, epoch: int) -> None:
    cfg = self.cfg
    if cfg.same_across_class and epoch == int(cfg.add_start):
      self.subset = pde.same_across_class_indices(self.train.groups, self.train.spurious,
                                                  rng=self.rng)
      return
    add_num = int(cfg.add_num)
    if add_num <= 0:
      left = len(pde.expansion_milestones(add_start=epoch, add_interval=int(cfg.add_interval),
                                          num_epochs=int(cfg.num_epochs)))
      add_num = pde.auto_add_num(len(self.train) - len(np.unique(self.subset)), left)
    self.subset = pde.expand_indices(
        self.subset, len(self.train), add_num=add_num, rng=self.rng,
        with_replacement=bool(cfg.with_replacement), uniform_add=bool(cfg.uniform_add),
        groups=self.train.groups, num_groups=self.num_groups)

  def plan_epoch(self, ctx):
    if ctx.epoch > self.last_milestone and self._is_milestone(ctx.epoch):
      self._expand(ctx.epoch)
      self.last_milestone = ctx.epoch
    return batches_of(self.rng.permutation(self.subset), self.batch_size)

  def expected_steps_per_epoch(self) -> int:
    return math.ceil(len(self.subset) / self.batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "subset": self.subset.tolist(),
            "last_milestone": self.last_milestone}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.subset = np.asarray(state["subset"], np.int64)
    self.last_milestone = int(state["last_milestone"])

  def results(self) -> dict[str, Any]:
    return {"pde_subset_size": int(len(self.subset))}


@POLICIES.register("full_batch")
class FullBatch(ReportsAlignment, EpochPolicy):
  """Full-batch gradient descent: every epoch is one step on the whole train split (the PDE
  paper's synthetic experiments). Needs config.train.batch_size >= the train split size."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.batch_size < len(self.train):
      raise ConfigError(f"config.train.batch_size={self.batch_size} must be >= the train split "
                        f"size ({len(self.train)}) for config.policy.name='full_batch'")

  def plan_epoch(self, ctx):
    return [(np.arange(len(self.train), dtype=np.int64), np.ones(len(self.train), np.float32))]

  def expected_steps_per_epoch(self) -> int:
    return 1


@POLICIES.register("jtt")
class JustTrainTwice(ReportsAlignment, EpochPolicy):
  """JTT (Liu et al. '21): ERM on all data for `stage1_epochs`; then the error set of that
  model on the train split (probe 'logits'); then a fresh model (`wants_reinit`) trained on all
  data with the error set up-sampled `upweight` times (`mode='upsample'`, SpuCo's JTT) or with
  loss weight `upweight` (`mode='upweight'`). Needs no group labels.

  Use a constant or step LR schedule: a cosine one would span both stages.
  """

  DEFAULTS = {"stage1_epochs": 1, "upweight": 20, "mode": "upsample"}
  MODES = ("upsample", "upweight")

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    cfg = self.cfg
    epochs = int(self.config.train.epochs) if "train" in self.config else None
    if int(cfg.stage1_epochs) < 1 or (epochs is not None and int(cfg.stage1_epochs) >= epochs):
      raise ConfigError(f"config.policy.stage1_epochs={cfg.stage1_epochs} must be in "
                        f"[1, config.train.epochs) (config.train.epochs={epochs})")
    if cfg.mode not in self.MODES:
      raise ConfigError(f"config.policy.mode={cfg.mode!r} is not known; allowed values: "
                        f"{list(self.MODES)}")
    if cfg.upweight < 1 or (cfg.mode == "upsample" and int(cfg.upweight) != cfg.upweight):
      raise ConfigError(f"config.policy.upweight={cfg.upweight} must be >= 1 (an integer for "
                        "mode='upsample')")
    self.errors: Optional[np.ndarray] = None
    self.reinit_pending = False

  def plan_epoch(self, ctx: PolicyContext):
    n = len(self.train)
    if self.errors is None:
      return batches_of(self.rng.permutation(n), self.batch_size)
    if self.cfg.mode == "upsample":
      idx = jtt.upsample_indices(n, self.errors, upweight=int(self.cfg.upweight), rng=self.rng)
      return batches_of(idx, self.batch_size)
    weights = jtt.upweight_weights(n, self.errors, upweight=float(self.cfg.upweight))
    order = self.rng.permutation(n)
    return batches_of(order, self.batch_size, weights[order])

  def on_epoch_end(self, ctx: PolicyContext) -> None:
    if self.errors is None and ctx.epoch == int(self.cfg.stage1_epochs) - 1:
      all_idx = np.arange(len(self.train), dtype=np.int64)
      logits = ctx.probe("logits", all_idx)
      self.examples_probed += len(all_idx)
      self.errors = jtt.error_set(logits.argmax(-1), self.train.y)
      self.reinit_pending = True

  def wants_reinit(self) -> bool:
    pending, self.reinit_pending = self.reinit_pending, False
    return pending

  def expected_steps_per_epoch(self) -> int:
    extra = 0 if self.errors is None or self.cfg.mode != "upsample" else (
        len(self.errors) * (int(self.cfg.upweight) - 1))
    return math.ceil((len(self.train) + extra) / self.batch_size)

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "reinit_pending": self.reinit_pending,
            "errors": None if self.errors is None else self.errors.tolist()}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.reinit_pending = bool(state["reinit_pending"])
    self.errors = None if state["errors"] is None else np.asarray(state["errors"], np.int64)

  def results(self) -> dict[str, Any]:
    if self.errors is None:
      return {}
    out: dict[str, Any] = {"jtt_error_set_size": int(len(self.errors))}
    if self.train.groups is not None and self.num_groups:
      out["jtt_error_set_group_counts"] = np.bincount(
          self.train.groups[self.errors], minlength=self.num_groups).tolist()
    return out
