"""DP gradient rules: `rule(loss_fn, params, model_state, batch, rng, coef_fn)`.

Per step with B = expected batch size, clip_C(v) = v min(1, C/||v||), z ~ N(0, sigma^2 C^2 I)
(spec §6, Watson et al.):
  sgd        (1/B) sum_i g_i
  clip_only  (1/B) sum_i clip_C(g_i)
  noise_only (1/B) (sum_i g_i + z)
  dp_sgd     (1/B) (sum_i clip_C(g_i) + z)
where g_i = grad(coef_i * loss_i) over the real rows (mask 1). Every mode goes through the same
per-example machinery, so the reported gradient-norm metrics mean the same in each mode.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from robustdata.privacy import checks, clipping, ghost, noise
from robustdata.privacy.masks import flat_operand_mask  # the step operand of a mask

PyTree = Any
Rule = Callable[..., tuple[PyTree, PyTree, dict]]


def mode_flags(mode: str) -> tuple[bool, bool]:
  """(clip, add_noise) for a mode name."""
  checks.check_choice("mode", mode, checks.MODES)
  return mode in ("clip_only", "dp_sgd"), mode in ("noise_only", "dp_sgd")


def mode_for_epoch(epoch: int, *, mode: str, switch_epoch: Optional[int] = None,
                   switch_to_mode: Optional[str] = None) -> str:
  """The mode in force at `epoch`: `mode` before `switch_epoch`, `switch_to_mode` from it on
  (the early / late windows of spec §6). The loop builds one rule per mode it meets."""
  if switch_epoch is None or switch_epoch < 0 or not switch_to_mode:
    return mode
  checks.check_choice("switch_to_mode", switch_to_mode, checks.MODES)
  return switch_to_mode if epoch >= switch_epoch else mode


def make_dp_rule(*, mode: str, clip_norm: float, noise_multiplier: float,
                 expected_batch_size: float, method: str = "vmap",
                 microbatch_size: Optional[int] = None, per_layer: bool = False,
                 mask: Optional[PyTree] = None) -> Rule:
  """Builds a jittable gradient rule for one of the four modes.

  method: 'vmap' (per-example grads, optionally `microbatch_size` at a time), 'ghost'
  (book-keeping, Dense/Conv norms without per-example grads) or 'loop' (test reference).
  per_layer: clip each layer to C / sqrt(L) instead of the whole gradient to C.
  mask: params-shaped 0/1 pruning mask; pruned coordinates get no gradient and no noise. A
    mask can also come at call time, `rule(..., operands={"mask": flat_mask})` with
    flat_mask = `flat_operand_mask(mask)` (a step argument: a new mask reuses the compiled
    step); it replaces the built-in one.
  aux: grad_norm_mean, clip_fraction, noise_std (of the returned gradient), batch_size, loss,
  and the per-example `losses` and `logits` the train step reads (and removes).
  """
  clip, add_noise = mode_flags(mode)
  checks.check_clip_norm(clip_norm)
  checks.check_noise_multiplier(noise_multiplier)
  checks.check_choice("clipping", method, checks.CLIPPING_METHODS)
  if not expected_batch_size > 0:
    raise checks.ConfigError(f"config.train.batch_size={expected_batch_size} must be > 0")
  if microbatch_size is not None and microbatch_size <= 0:
    raise checks.ConfigError(f"config.privacy.microbatch_size={microbatch_size} must be > 0")
  static_mask = (None if mask is None
                 else jax.tree.map(jnp.asarray, flat_operand_mask(mask)) or None)

  def rule(loss_fn, params, model_state, batch, rng, coef_fn, operands=None):
    checks.check_no_batchnorm(model_state)
    flat_mask = static_mask if operands is None else operands["mask"]
    grad_key, noise_key = jax.random.split(rng)
    if method == "ghost":
      summed, stats, losses, _ = ghost.ghost_clipped_sum(
          loss_fn, params, model_state, batch, grad_key, coef_fn, clip_norm=clip_norm,
          clip=clip, per_layer=per_layer, mask=flat_mask)
    else:
      summed, stats, losses = clipping.clipped_sum_vmap(
          loss_fn, params, model_state, batch, grad_key, coef_fn, clip_norm=clip_norm,
          clip=clip, per_layer=per_layer, method=method, microbatch_size=microbatch_size,
          mask=flat_mask)
    grads = noise.privatize(summed, noise_key, clip_norm=clip_norm,
                            noise_multiplier=noise_multiplier,
                            expected_batch_size=expected_batch_size, add_noise=add_noise,
                            mask=flat_mask)
    row_mask = batch["mask"].astype(jnp.float32)
    aux = dict(stats)
    aux["noise_std"] = jnp.asarray(
        noise_multiplier * clip_norm / expected_batch_size if add_noise else 0.0, jnp.float32)
    aux["batch_size"] = jnp.sum(row_mask)
    aux["loss"] = jnp.sum(row_mask * losses) / jnp.maximum(jnp.sum(row_mask), 1.0)
    aux["losses"] = losses
    # Model state is read-only under DP (BatchNorm is refused): return it unchanged.
    return grads, model_state, aux

  return rule
