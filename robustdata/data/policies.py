"""Data policies: which examples, with which weights, the next batches hold.

A policy lives on the host and sees the model only through compiled probes (`ctx.probe`). Its
whole state (plan, position, NumPy RNG state, selections) round-trips through `state_dict`, so
a killed run resumes bitwise. Policies register by `config.policy.name`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np

from robustdata.data.dataset import Dataset
from robustdata.registry import POLICIES, ConfigError


@dataclasses.dataclass
class PolicyContext:
  """What a policy may look at when the loop calls it.

  Attributes:
    step: optimizer steps done so far.
    epoch: the current epoch (0-based).
    state: the current TrainState (opaque to policies; pass it to `probe`).
    probe: `probe(name, indices) -> np.ndarray` computes a probe ('logits', 'loss', 'proxy',
      'features', 'proxy_linear', 'grad_norm_proxy') on train examples, un-augmented, in eval
      mode, with the current state.
    metrics: the host metrics of the last step (only in `on_step` when they were fetched).
    loss_fn: the step's per-example loss `loss_fn(params, model_state, batch, rng, train)`, for
      policies that compile their own probes over the parameters (CREST's quadratic model).
    lr: the learning rate of the last step (host float).
  """

  step: int
  epoch: int
  state: Any
  probe: Callable[[str, np.ndarray], np.ndarray]
  metrics: Optional[dict] = None
  loss_fn: Optional[Callable] = None
  lr: float = 0.0


class Policy(abc.ABC):
  """Base class of data policies.

  Subclasses declare `DEFAULTS` (their config fields with defaults); an unknown field in
  `config.policy` is an error naming it.
  """

  DEFAULTS: dict[str, Any] = {}
  # True for a policy that writes rows of the train split in place while training: the loader
  # then gathers every batch on the host instead of from a device copy of the split.
  rewrites_train = False

  def __init__(self, config, train: Dataset, *, batch_size: int, seed: int,
               num_classes: int, num_groups: int = 0):
    self.cfg = resolve_fields(config.policy, self.DEFAULTS)
    self.config = config
    self.train = train
    self.batch_size = batch_size
    self.num_classes = num_classes
    self.num_groups = num_groups
    self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9011C1]))
    self.examples_probed = 0  # forward passes spent on probes (selection cost)

  @abc.abstractmethod
  def steps_for(self, ctx: PolicyContext) -> int:
    """The number of steps of epoch `ctx.epoch` (called once at the start of each epoch)."""

  def expected_steps_per_epoch(self) -> int:
    """An estimate of steps per epoch, for progress bars and ETA."""
    return math.ceil(len(self.train) / self.batch_size)

  @abc.abstractmethod
  def next_batch(self, ctx: PolicyContext) -> tuple[np.ndarray, np.ndarray]:
    """(indices into the train split, float weights) of the next batch; at most batch_size."""

  def on_step(self, ctx: PolicyContext) -> None:
    """Called after every step."""

  def on_epoch_end(self, ctx: PolicyContext) -> None:
    """Called after the last step of an epoch."""

  def wants_reinit(self) -> bool:
    """True to have the loop re-initialise params and optimizer state after this epoch end
    (e.g. JTT's second stage trains a fresh model). Asked once after each `on_epoch_end`."""
    return False

  def state_dict(self) -> dict[str, Any]:
    """Everything needed to resume bitwise (JSON-serialisable after `to_json`)."""
    return {"rng": self.rng.bit_generator.state, "examples_probed": self.examples_probed}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    self.rng.bit_generator.state = state["rng"]
    self.examples_probed = int(state["examples_probed"])

  def results(self) -> dict[str, Any]:
    """Keys this policy adds to results.json."""
    return {}


def resolve_fields(section, defaults: dict[str, Any]):
  """`config.policy` merged over the policy's defaults; unknown fields are an error. A None
  field is unset (as `config_lib.with_defaults` reads `finalize`'s placeholders): it takes the
  default, and is ignored if the policy has no such field."""
  allowed = set(defaults) | {"name"}
  given = {k: section[k] for k in section.keys() if k != "name" and section[k] is not None}
  for key in given:
    if key not in allowed:
      raise ConfigError(f"config.policy.{key} is not a field of policy {section.name!r}; "
                        f"allowed fields: {sorted(allowed)}")
  return _AttrDict({**defaults, **given})


class _AttrDict(dict):
  __getattr__ = dict.__getitem__


class EpochPolicy(Policy):
  """A policy that fixes a plan of batches at the start of each epoch and serves it."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.epoch = -1
    self.position = 0
    self.plan_indices: list[np.ndarray] = []
    self.plan_weights: list[np.ndarray] = []

  @abc.abstractmethod
  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches of epoch `ctx.epoch` as (indices, weights) pairs."""

  def _ensure_plan(self, ctx: PolicyContext) -> None:
    if self.epoch != ctx.epoch:
      plan = self.plan_epoch(ctx)
      if not plan:
        raise ConfigError(f"policy {self.config.policy.name!r} planned an empty epoch "
                          f"{ctx.epoch}; check config.policy")
      self.plan_indices = [np.asarray(i, np.int64) for i, _ in plan]
      self.plan_weights = [np.asarray(w, np.float32) for _, w in plan]
      self.epoch, self.position = ctx.epoch, 0

  def steps_for(self, ctx: PolicyContext) -> int:
    self._ensure_plan(ctx)
    return len(self.plan_indices)

  def next_batch(self, ctx: PolicyContext) -> tuple[np.ndarray, np.ndarray]:
    self._ensure_plan(ctx)
    i = self.position
    self.position += 1
    return self.plan_indices[i], self.plan_weights[i]

  def state_dict(self) -> dict[str, Any]:
    return {**super().state_dict(), "epoch": self.epoch, "position": self.position,
            "plan_indices": [a.tolist() for a in self.plan_indices],
            "plan_weights": [a.tolist() for a in self.plan_weights]}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    self.epoch, self.position = int(state["epoch"]), int(state["position"])
    self.plan_indices = [np.asarray(a, np.int64) for a in state["plan_indices"]]
    self.plan_weights = [np.asarray(a, np.float32) for a in state["plan_weights"]]


def batches_of(indices: np.ndarray, batch_size: int,
               weights: Optional[np.ndarray] = None) -> list[tuple[np.ndarray, np.ndarray]]:
  """Consecutive batches of `indices` (the last one may be short; the loader pads it)."""
  weights = np.ones(len(indices), np.float32) if weights is None else weights
  return [(indices[s:s + batch_size], weights[s:s + batch_size])
          for s in range(0, len(indices), batch_size)]


@POLICIES.register("full")
class FullData(EpochPolicy):
  """Shuffled epochs over all training data, weight 1."""

  def plan_epoch(self, ctx):
    return batches_of(self.rng.permutation(len(self.train)), self.batch_size)


@POLICIES.register("random_subset")
class RandomSubset(EpochPolicy):
  """A fresh uniform random `fraction` of the training data each epoch (same step budget as a
  coreset of that size), weight 1."""

  DEFAULTS = {"fraction": 0.1}

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not 0.0 < self.cfg.fraction <= 1.0:
      raise ConfigError(f"config.policy.fraction={self.cfg.fraction} must be in (0, 1]")
    self.size = max(1, int(round(self.cfg.fraction * len(self.train))))

  def plan_epoch(self, ctx):
    subset = self.rng.choice(len(self.train), size=self.size, replace=False)
    return batches_of(subset, self.batch_size)

  def expected_steps_per_epoch(self) -> int:
    return math.ceil(self.size / self.batch_size)



def to_json(state: Any) -> Any:
  """Policy state to JSON-ready values (NumPy scalars and arrays become Python ones)."""
  if isinstance(state, dict):
    return {str(k): to_json(v) for k, v in state.items()}
  if isinstance(state, (list, tuple)):
    return [to_json(v) for v in state]
  if isinstance(state, np.ndarray):
    return state.tolist()
  if isinstance(state, np.generic):
    return state.item()
  return state
