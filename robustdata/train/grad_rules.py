"""Gradient rules: from a per-example loss to the gradient the optimizer sees.

A rule is `rule(loss_fn, params, model_state, batch, rng, coef_fn) ->
(grads, new_model_state, aux)`, where `loss_fn(params, model_state, batch, rng, train) ->
(losses[B], (new_model_state, logits))` and `coef_fn(losses, batch) -> coef[B]`. A rule is
built from `config.privacy` by a registered builder
`build(privacy_config, *, expected_batch_size, dataset_size, steps=None, epochs=None)` that
returns either a rule or a `RulePlan` (a rule that may change during training).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Optional

import jax
import jax.numpy as jnp

from robustdata import config_lib
from robustdata.registry import GRAD_RULES

PyTree = Any


@dataclasses.dataclass(frozen=True)
class RuleChoice:
  """The rule in force for an epoch.

  key: the loop re-jits the step only when this changes.
  rule: the gradient rule.
  project: optional `params -> params` applied after every optimizer update and once when the
    choice comes into force (e.g. a pruning mask); must be idempotent.
  operands: optional arrays the rule and `project` read as step *arguments* (then called as
    `rule(..., coef_fn, operands=operands)` and `project(params, operands)`), so a new value
    of the same shapes (a pruning mask recomputed every few epochs) reuses the compiled step;
    only a new `key` re-jits.
  """

  key: Hashable
  rule: Callable
  project: Optional[Callable[..., PyTree]] = None
  operands: Optional[PyTree] = None


class RulePlan:
  """A gradient rule over a whole run; the base class serves one fixed rule.

  The loop calls `setup` once before compiling (to refuse unsuitable models), `choose` at
  every epoch start (and after a restore), `epoch_metrics` after each epoch and `results` at
  the end; `state_dict` / `load_state_dict` ride along in the checkpoint's host state.
  """

  def __init__(self, rule: Callable):
    self.rule = rule

  def setup(self, params: PyTree, model_state: PyTree, *, config: Any = None) -> None:
    """Checks the run's config and (abstract) params and model state; raises ConfigError
    before anything compiles."""
    del params, model_state, config

  def choose(self, epoch: int, params: PyTree) -> RuleChoice:
    """The rule for `epoch`, given the parameters at its start (host-side decision)."""
    del epoch, params
    return RuleChoice(key=0, rule=self.rule)

  def epoch_metrics(self, *, epoch: int, steps: int) -> dict[str, Any]:
    """Scalars to log after `epoch` (e.g. epsilon spent over `steps` steps so far)."""
    del epoch, steps
    return {}

  def results(self, *, epoch: int, steps: int) -> dict[str, Any]:
    """Keys merged into results.json."""
    del epoch, steps
    return {}

  def state_dict(self) -> dict[str, Any]:
    return {}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    del state


def as_plan(built: Any) -> RulePlan:
  """A builder's return value as a RulePlan (a bare rule becomes a fixed plan)."""
  return built if isinstance(built, RulePlan) else RulePlan(built)


def plain_rule(loss_fn, params, model_state, batch, rng, coef_fn):
  """grad of sum(mask * coef * loss) / sum(mask): the (weighted) mean over real rows."""

  def total(p):
    losses, (new_model_state, logits) = loss_fn(p, model_state, batch, rng, True)
    coef = coef_fn(jax.lax.stop_gradient(losses), batch)
    denom = jnp.maximum(jnp.sum(batch["mask"]), 1.0)
    return jnp.sum(batch["mask"] * coef * losses) / denom, (new_model_state, losses, logits)

  grads, (new_model_state, losses, logits) = jax.grad(total, has_aux=True)(params)
  return grads, new_model_state, {"losses": losses, "logits": logits}


@GRAD_RULES.register("sgd")
def build_plain(privacy_config, *, expected_batch_size: int, dataset_size: int,
                steps: Optional[int] = None, epochs: Optional[int] = None):
  """The plain rule. A section that schedules rules (a switch to another mode, pruning) is a
  plan: the builder of the DP modes owns it and starts it in `config.privacy.mode`."""
  switch_to = config_lib.privacy_field(privacy_config, "switch_to_mode")
  switching = config_lib.privacy_field(privacy_config, "switch_epoch") >= 0 and switch_to
  if switching or config_lib.privacy_field(privacy_config, "prune_sparsity") > 0:
    return GRAD_RULES.get("dp_sgd")(privacy_config, expected_batch_size=expected_batch_size,
                                 dataset_size=dataset_size, steps=steps, epochs=epochs)
  return plain_rule
