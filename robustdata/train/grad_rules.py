"""Gradient rules: from a per-example loss to the gradient the optimizer sees.

A rule is `rule(loss_fn, params, model_state, batch, rng, coef_fn) ->
(grads, new_model_state, aux)`, where `loss_fn(params, model_state, batch, rng, train) ->
(losses[B], (new_model_state, logits))` and `coef_fn(losses, batch) -> coef[B]`. A rule is
built from `config.privacy` by a registered builder
`build(privacy_config, *, expected_batch_size, dataset_size) -> rule`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robustdata.registry import GRAD_RULES


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
def build_plain(privacy_config, *, expected_batch_size: int, dataset_size: int):
  del privacy_config, expected_batch_size, dataset_size
  return plain_rule
