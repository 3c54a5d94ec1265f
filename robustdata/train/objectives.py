"""Objectives: how per-example losses are weighted into the training loss.

An objective sees stop-gradient per-example losses and returns per-example coefficients, so
every gradient rule (plain, per-example clipped) can use it; it may keep state across steps
in `TrainState.method_state` (e.g. GroupDRO's group weights, ELR's per-example targets).
An objective that changes the loss itself (ELR's regulariser, mixup's mixed inputs and
targets, robustdata/label_noise/objectives.py) wraps the per-example loss, the gradient rule
and the compiled step through the `wrap_*` hooks; the base hooks return what they are given,
so other objectives compile the same step as before. The objectives of the method families
register from their own modules (spurious/objectives.py, label_noise/objectives.py).
"""

from __future__ import annotations

import abc
from typing import Any, Callable

import jax.numpy as jnp

from robustdata import config_lib
from robustdata.registry import OBJECTIVES, ConfigError, check_known_fields, field_reader


class Objective(abc.ABC):
  """Base class. `coefficients` must be a pure, jit-able function."""

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    self.config = config
    self.num_groups = num_groups
    self.num_classes = num_classes

  def prepare(self, train) -> None:
    """Sees the train split (a Dataset) before `init`, e.g. to size per-example state."""
    del train

  def init(self) -> Any:
    """The initial method state (a pytree of arrays)."""
    return {}

  def wrap_loss(self, loss_fn: Callable) -> Callable:
    """The per-example loss the train step differentiates (the policies' probes keep the
    plain one)."""
    return loss_fn

  def wrap_rule(self, rule: Callable) -> Callable:
    """The gradient rule the train step calls."""
    return rule

  def wrap_step(self, step_fn: Callable) -> Callable:
    """The train step `(state, batch, lr, operands=None) -> (state, metrics)` that is jitted."""
    return step_fn

  @abc.abstractmethod
  def coefficients(self, losses: jnp.ndarray, batch: dict, method_state: Any):
    """(coef[B], new_method_state, metrics) from stop-gradient losses and the batch."""


@OBJECTIVES.register("erm")
class ERM(Objective):
  """Empirical risk: each example weighted by the policy's weight (1 for plain training)."""

  def coefficients(self, losses, batch, method_state):
    return batch["weight"], method_state, {}


def section_reader(config, name: str, defaults: dict[str, Any]) -> Callable[[str], Any]:
  """A reader of config.<name> (fields checked against `defaults` and validation.RULES)."""
  from robustdata import validation  # pylint: disable=g-import-not-at-top
  section = config.get(name, None) if hasattr(config, "get") else None
  if section is not None:
    check_known_fields(section, defaults, f"config.{name}")
  get = field_reader(section, defaults)
  validation.check_ranges({name: {key: get(key) for key in defaults}})
  return get


def require_plain_rule(config, method: str) -> None:
  """ELR and mixup compute the loss of the whole batch at once (mixup mixes rows; ELR reads
  and writes per-example targets), so they need the plain gradient rule."""
  privacy = config.get("privacy", None) if hasattr(config, "get") else None
  mode = config_lib.privacy_field(privacy, "mode")
  pruned = config_lib.privacy_field(privacy, "prune_sparsity") > 0
  switch = (config_lib.privacy_field(privacy, "switch_epoch") >= 0
            and config_lib.privacy_field(privacy, "switch_to_mode"))
  if mode != "sgd" or pruned or switch:
    raise ConfigError(f"config.method={method!r} needs the plain gradient rule: "
                      f"config.privacy.mode='sgd' without prune_sparsity or a mode switch "
                      f"(got mode={mode!r}, prune_sparsity="
                      f"{config_lib.privacy_field(privacy, 'prune_sparsity')}, switch_epoch="
                      f"{config_lib.privacy_field(privacy, 'switch_epoch')})")
