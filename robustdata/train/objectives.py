"""Objectives: how per-example losses are weighted into the training loss.

An objective sees stop-gradient per-example losses and returns per-example coefficients, so
every gradient rule (plain, per-example clipped) can use it; it may keep state across steps
in `TrainState.method_state` (e.g. GroupDRO's group weights).
"""

from __future__ import annotations

import abc
from typing import Any

import jax.numpy as jnp

from robustdata.registry import OBJECTIVES


class Objective(abc.ABC):
  """Base class. `coefficients` must be a pure, jit-able function."""

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    self.config = config
    self.num_groups = num_groups
    self.num_classes = num_classes

  def init(self) -> Any:
    """The initial method state (a pytree of arrays)."""
    return {}

  @abc.abstractmethod
  def coefficients(self, losses: jnp.ndarray, batch: dict, method_state: Any):
    """(coef[B], new_method_state, metrics) from stop-gradient losses and the batch."""


@OBJECTIVES.register("erm")
class ERM(Objective):
  """Empirical risk: each example weighted by the policy's weight (1 for plain training)."""

  def coefficients(self, losses, batch, method_state):
    return batch["weight"], method_state, {}
