"""Per-example gradients and per-example L2 clipping (flat or per layer).

Three ways to get per-example gradients of `coef_i * loss_i`: `vmap(grad)` (optionally in
micro-batches to bound memory at `microbatch_size * |params|`), a Python loop over examples
(the test reference), and ghost / book-keeping clipping in `ghost.py`. All share the clip
factors computed here, so they agree to float tolerance.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp

from robustdata.registry import ConfigError

PyTree = Any
LossFn = Callable[..., Any]


def flatten(tree: PyTree) -> dict[tuple, Any]:
  """Flattens a nested params dict to {path tuple: leaf}."""
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def unflatten(flat: dict[tuple, Any]) -> PyTree:
  """Inverse of `flatten`."""
  return flax.traverse_util.unflatten_dict(flat)


def layer_groups(params: PyTree) -> dict[tuple, list[tuple]]:
  """Groups parameter leaves by the module that owns them (the path minus the leaf name);
  per-layer clipping clips each group separately."""
  groups: dict[tuple, list[tuple]] = {}
  for key in flatten(params):
    groups.setdefault(key[:-1], []).append(key)
  return groups


def clip_factors(sq_norms: jnp.ndarray, *, clip_norm: float, per_layer: bool,
                 clip: bool) -> jnp.ndarray:
  """Per-example (and per-layer) scale factors min(1, C / ||g||) from squared norms [B, L].

  Flat clipping uses the total norm over all L groups; per-layer clipping gives group l the
  threshold C / sqrt(L), so the clipped gradient's total norm stays <= C (sensitivity C).
  Returns factors [B, L]; all ones when `clip` is False.
  """
  if not clip:
    return jnp.ones_like(sq_norms)
  num_groups = sq_norms.shape[1]
  tiny = jnp.finfo(sq_norms.dtype).tiny
  if per_layer:
    norms = jnp.sqrt(sq_norms)
    threshold = clip_norm / jnp.sqrt(num_groups)
    return jnp.minimum(1.0, threshold / jnp.maximum(norms, tiny))
  norms = jnp.sqrt(jnp.sum(sq_norms, axis=1, keepdims=True))
  factors = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, tiny))
  return jnp.broadcast_to(factors, sq_norms.shape)


def clip_stats(sq_norms: jnp.ndarray, factors: jnp.ndarray, mask: jnp.ndarray) -> dict:
  """Scalar metrics over the real rows: mean per-example gradient norm (before clipping)
  and the fraction of (example, group) pairs that were scaled down."""
  count = jnp.maximum(jnp.sum(mask), 1.0)
  norms = jnp.sqrt(jnp.sum(sq_norms, axis=1))
  clipped = jnp.mean((factors < 1.0).astype(jnp.float32), axis=1)
  return {
      "grad_norm_mean": jnp.sum(mask * norms) / count,
      "clip_fraction": jnp.sum(mask * clipped) / count,
  }


def _example_loss(loss_fn: LossFn, model_state: PyTree) -> Callable:
  """(loss, logits) of one example, calling `loss_fn` on a batch of size 1 (each array sliced
  to [None])."""
  def single(params, row, key):
    example = jax.tree_util.tree_map(lambda a: a[None], row)
    losses, (_, logits) = loss_fn(params, model_state, example, key, train=True)
    return losses[0], logits[0]
  return single


def per_example_grads(loss_fn: LossFn, params: PyTree, model_state: PyTree, batch: dict,
                      rng: jax.Array, *, method: str = "vmap") -> tuple[PyTree, jnp.ndarray]:
  """Per-example gradients [B, ...] of loss_i and the losses [B], by `vmap` or a Python loop.

  Example i gets the key fold_in(rng, i), so stochastic layers differ across examples.
  """
  grads, losses, _ = per_example_grads_and_logits(loss_fn, params, model_state, batch, rng,
                                                  method=method)
  return grads, losses


def per_example_grads_and_logits(loss_fn: LossFn, params: PyTree, model_state: PyTree,
                                 batch: dict, rng: jax.Array, *, method: str = "vmap"
                                 ) -> tuple[PyTree, jnp.ndarray, jnp.ndarray]:
  """`per_example_grads` plus the logits [B, C] of the same forward passes."""
  single = _example_loss(loss_fn, model_state)
  size = jax.tree_util.tree_leaves(batch)[0].shape[0]
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(size))
  value_and_grad = jax.value_and_grad(single, has_aux=True)
  if method == "vmap":
    (losses, logits), grads = jax.vmap(value_and_grad, in_axes=(None, 0, 0))(params, batch, keys)
    return grads, losses, logits
  if method == "loop":
    outs = []
    for i in range(size):
      row = jax.tree_util.tree_map(lambda a: a[i], batch)
      outs.append(value_and_grad(params, row, keys[i]))
    losses = jnp.stack([o[0][0] for o in outs])
    logits = jnp.stack([o[0][1] for o in outs])
    grads = jax.tree_util.tree_map(lambda *g: jnp.stack(g), *[o[1] for o in outs])
    return grads, losses, logits
  raise ConfigError(f"config.privacy.clipping={method!r} must be one of ['vmap', 'loop']")


def group_sq_norms(grads: PyTree, groups: dict[tuple, list[tuple]],
                   mask: Optional[dict[tuple, jnp.ndarray]] = None) -> jnp.ndarray:
  """Squared norms [B, L] of per-example gradients, one column per layer group, after
  applying pruning masks (pruned coordinates do not count towards the norm)."""
  flat = flatten(grads)
  cols = []
  for keys in groups.values():
    total = 0.0
    for key in keys:
      g = flat[key]
      if mask is not None and key in mask:
        g = g * mask[key]
      total = total + jnp.sum(jnp.reshape(g * g, (g.shape[0], -1)), axis=1)
    cols.append(total)
  return jnp.stack(cols, axis=1)


def weighted_sum(grads: PyTree, groups: dict[tuple, list[tuple]],
                 weights: jnp.ndarray) -> PyTree:
  """sum_i weights[i, l] * g_i for every leaf of group l: the clipped, summed gradient."""
  flat = flatten(grads)
  out = {}
  for col, keys in enumerate(groups.values()):
    for key in keys:
      out[key] = jnp.tensordot(weights[:, col], flat[key], axes=1)
  return unflatten(out)


def clipped_sum_vmap(loss_fn: LossFn, params: PyTree, model_state: PyTree, batch: dict,
                     rng: jax.Array, coef_fn: Callable, *, clip_norm: float, clip: bool,
                     per_layer: bool, method: str = "vmap",
                     microbatch_size: Optional[int] = None,
                     mask: Optional[dict[tuple, jnp.ndarray]] = None
                     ) -> tuple[PyTree, dict, jnp.ndarray]:
  """Sum over real rows of clip_C(grad(coef_i * loss_i)) with per-example gradients
  materialised by vmap (all at once or `microbatch_size` at a time) or by a loop.

  Returns (clipped sum, clip stats, losses [B]); the stats carry the batch `logits` too.
  """
  groups = layer_groups(params)
  row_mask = batch["mask"].astype(jnp.float32)
  size = row_mask.shape[0]

  def finish(grads, weights):
    sq = group_sq_norms(jax.tree_util.tree_map(
        lambda g: g * weights.reshape((-1,) + (1,) * (g.ndim - 1)), grads), groups, mask)
    factors = clip_factors(sq, clip_norm=clip_norm, per_layer=per_layer, clip=clip)
    return weighted_sum(grads, groups, factors * weights[:, None]), sq, factors

  if microbatch_size is None or microbatch_size >= size:
    grads, losses, logits = per_example_grads_and_logits(loss_fn, params, model_state, batch,
                                                         rng, method=method)
    weights = row_mask * coef_fn(jax.lax.stop_gradient(losses), batch)
    total, sq, factors = finish(grads, weights)
    return total, {**clip_stats(sq, factors, row_mask), "logits": logits}, losses

  if microbatch_size <= 0 or size % microbatch_size:
    raise ConfigError(f"config.privacy.microbatch_size={microbatch_size} must be > 0 and "
                      f"divide the batch size {size}")
  # Coefficients may depend on the whole batch's losses (e.g. GroupDRO), so one forward first.
  losses, (_, logits) = loss_fn(params, model_state, batch, rng, train=True)
  weights = row_mask * coef_fn(jax.lax.stop_gradient(losses), batch)
  num = size // microbatch_size
  chunk = lambda a: jnp.reshape(a, (num, microbatch_size) + a.shape[1:])
  chunks = jax.tree_util.tree_map(chunk, batch)
  keys = jax.random.split(rng, num)

  def body(carry, xs):
    part, w, key = xs
    grads, _ = per_example_grads(loss_fn, params, model_state, part, key, method="vmap")
    total, sq, factors = finish(grads, w)
    return jax.tree_util.tree_map(jnp.add, carry, total), (sq, factors)

  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  total, (sq, factors) = jax.lax.scan(body, zeros, (chunks, chunk(weights), keys))
  sq = jnp.reshape(sq, (size, -1))
  factors = jnp.reshape(factors, (size, -1))
  return total, {**clip_stats(sq, factors, row_mask), "logits": logits}, losses
