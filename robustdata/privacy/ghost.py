"""Ghost / book-keeping clipping for flax.linen models, without per-example gradients.

One forward-backward pass, run under `nn.intercept_methods`, records the input `a` of every
`nn.Dense` / `nn.Conv` call and adds a zero perturbation to its output; the gradient with
respect to the perturbations is each example's output gradient `g`. Per-example squared norms
of the weight gradient `a_i^T g_i` then come either from Gram matrices (ghost norm,
(a_i a_i^T) . (g_i g_i^T), cheap when the number of positions T is small) or from the
per-example gradient itself (direct, cheap when T is large), chosen per layer by cost as in
Book-Keeping (Bu et al., 2023). The clipped sum is formed from the same stored `a` and `g`
(book-keeping: sum_i c_i a_i^T g_i is one weight-gradient op), so no second backward pass.

Parameters of other modules (GroupNorm / LayerNorm scale and bias, embeddings, layers called
more than once) are handled exactly: during the pass such a module runs with per-example
copies of its parameters, and the gradient with respect to the copies is the per-example
gradient (small: B x |module params|). Pruned or unusual layers (circular padding, grouped
convolutions) get per-example gradients from a vmap over the layer alone.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robustdata.privacy import clipping
from robustdata.registry import ConfigError

PyTree = Any


@dataclasses.dataclass
class _Unit:
  """One parameter-owning module call seen during tracing.

  kind: 'dense' | 'conv' (ghost or direct norm), 'layer' (per-example grads by vmap over the
  layer alone), 'copy' (per-example parameter copies).
  """

  path: tuple
  kind: str
  module: Any          # unbound clone, used to re-apply the layer for the weighted gradient
  method: str
  calls: int = 1


def _is_method_of_interest(context) -> bool:
  name = context.method_name
  return name == "__call__" or not (name == "setup" or name.startswith("_"))


def _subtree(flat: dict[tuple, Any], path: tuple) -> dict[tuple, Any]:
  """Leaves under `path`, keyed relative to it."""
  n = len(path)
  return {k[n:]: v for k, v in flat.items() if k[:n] == path and len(k) > n}


def _conv_plan(module: nn.Conv) -> Optional[dict]:
  """Static conv arguments for patch extraction, or None if the layer needs the fallback."""
  if module.feature_group_count != 1 or getattr(module, "mask", None) is not None:
    return None
  kernel_size = ((module.kernel_size,) if isinstance(module.kernel_size, int)
                 else tuple(module.kernel_size))
  n = len(kernel_size)
  expand = lambda v: (1,) * n if v is None else ((v,) * n if isinstance(v, int) else tuple(v))
  padding = nn.linear.canonicalize_padding(module.padding, n)
  if isinstance(padding, str) and padding not in ("SAME", "VALID"):
    return None
  return dict(filter_shape=kernel_size, window_strides=expand(module.strides), padding=padding,
              lhs_dilation=expand(module.input_dilation),
              rhs_dilation=expand(module.kernel_dilation))


def _discover(loss_fn, params, model_state, batch, rng, masked_paths: set) -> dict[tuple, _Unit]:
  """Traces the loss once (shapes only) and classifies every parameter-owning module call."""
  flat = clipping.flatten(params)
  owners = {k[:-1] for k in flat}
  seen: dict[tuple, _Unit] = {}

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, nn.BatchNorm):
      raise ConfigError("config.model.norm='batch' is not allowed under DP-SGD: BatchNorm mixes "
                        "examples; use config.model.norm='group'")
    if not _is_method_of_interest(context):
      return next_fun(*args, **kwargs)
    path = tuple(module.path)
    if path in owners:
      if path in seen:
        seen[path].calls += 1
        if seen[path].method != context.method_name:
          seen[path].kind = "copy"
      else:
        if type(module) is nn.Dense:
          kind = "dense"
        elif type(module) is nn.Conv:
          kind = "conv" if _conv_plan(module) is not None else "layer"
        else:
          kind = "copy"
        has_children = any(len(k) > len(path) + 1 for k in flat if k[:len(path)] == path)
        if kind != "copy" and (has_children or len(args) != 1 or kwargs):
          kind = "copy"
        if kind in ("dense", "conv") and path in masked_paths:
          kind = "layer"
        seen[path] = _Unit(path, kind, module.clone(parent=None), context.method_name)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda p: loss_fn(p, model_state, batch, rng, train=True), params)

  units = {}
  for path, unit in seen.items():
    if unit.calls > 1:
      unit.kind = "copy"
    # Modules inside a 'copy' module run inside its per-example call and are not seen.
    if any(other != path and path[:len(other)] == other and seen[other].kind == "copy"
           for other in seen):
      continue
    units[path] = unit
  covered = {k for k in flat if any(k[:len(p)] == p for p in units)}
  missing = sorted(set(flat) - covered)
  if missing:
    raise ConfigError(
        f"config.privacy.clipping='ghost' cannot attribute parameters {missing[:4]} to a module "
        "call; use config.privacy.clipping='vmap' for this model")
  return units


def _split_batched(size: int, args: tuple, kwargs: dict):
  """Splits call arguments into per-example arrays (leading axis B) and static ones."""
  def is_batched(v):
    return isinstance(v, jax.Array) and v.ndim >= 1 and v.shape[0] == size
  leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
  batched = [l for l in leaves if is_batched(l)]
  flags = [is_batched(l) for l in leaves]

  def rebuild(rows):
    it = iter(rows)
    return jax.tree_util.tree_unflatten(
        treedef, [next(it)[None] if f else l for l, f in zip(leaves, flags)])
  return batched, rebuild


def _masked_dense_sq_norms(a: jnp.ndarray, g: jnp.ndarray, kernel_mask: Optional[jnp.ndarray],
                           bias_mask: Optional[jnp.ndarray], use_bias: bool) -> jnp.ndarray:
  """Per-example squared norm of a masked Dense gradient for 2-D inputs (B, d_in) without
  forming it: sum_jk M_jk (a_ij g_ik)^2 = (a_i^2)^T M (g_i^2), as M is 0/1; plus the bias term
  sum_k Mb_k g_ik^2."""
  a2, g2 = a * a, g * g
  if kernel_mask is None:
    sq = jnp.sum(a2, axis=1) * jnp.sum(g2, axis=1)
  else:
    sq = jnp.einsum("bi,io,bo->b", a2, kernel_mask.astype(a2.dtype), g2)
  if use_bias:
    sq = sq + (jnp.sum(g2, axis=1) if bias_mask is None else g2 @ bias_mask.astype(g2.dtype))
  return sq


def _dense_sq_norms(a: jnp.ndarray, g: jnp.ndarray, use_bias: bool) -> jnp.ndarray:
  """Per-example squared norm of the Dense kernel (and bias) gradient a_i^T g_i."""
  b = a.shape[0]
  a = jnp.reshape(a, (b, -1, a.shape[-1]))
  g = jnp.reshape(g, (b, -1, g.shape[-1]))
  t, din, dout = a.shape[1], a.shape[2], g.shape[2]
  if t == 1:
    sq = jnp.sum(a[:, 0] ** 2, axis=1) * jnp.sum(g[:, 0] ** 2, axis=1)
  elif t * t * (din + dout) < t * din * dout:
    sq = jnp.sum(jnp.einsum("bti,bsi->bts", a, a) * jnp.einsum("bto,bso->bts", g, g), (1, 2))
  else:
    sq = jnp.sum(jnp.einsum("bti,bto->bio", a, g) ** 2, axis=(1, 2))
  if use_bias:
    sq = sq + jnp.sum(jnp.sum(g, axis=1) ** 2, axis=1)
  return sq


def _offset_slices(x: jnp.ndarray, *, filter_shape, window_strides, padding,
                   rhs_dilation) -> list[jnp.ndarray]:
  """For each filter offset (row-major), the strided slice [B, *out, C] of the padded
  channels-last input that the offset's kernel tap multiplies: memory moves only."""
  n = len(filter_shape)
  spatial = x.shape[1:1 + n]
  extent = [(k - 1) * d + 1 for k, d in zip(filter_shape, rhs_dilation)]
  pads = (jax.lax.padtype_to_pads(spatial, extent, window_strides, padding)
          if isinstance(padding, str) else [tuple(p) for p in padding])
  xp = jax.lax.pad(x, jnp.zeros((), x.dtype),
                   [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)])
  out = [(size + lo + hi - e) // st + 1
         for size, (lo, hi), e, st in zip(spatial, pads, extent, window_strides)]
  pieces = []
  for offsets in itertools.product(*[range(k) for k in filter_shape]):
    start = [o * d for o, d in zip(offsets, rhs_dilation)]
    limit = [s0 + (m - 1) * st + 1 for s0, m, st in zip(start, out, window_strides)]
    pieces.append(jax.lax.slice(xp, [0, *start, 0], [x.shape[0], *limit, x.shape[-1]],
                                [1, *window_strides, 1]))
  return pieces


def _unfold(x: jnp.ndarray, *, filter_shape, window_strides, padding, lhs_dilation,
            rhs_dilation) -> jnp.ndarray:
  """Patches [B, *out, prod(filter) * C] of a channels-last input from `_offset_slices`.
  (`lax.conv_general_dilated_patches` convolves with a one-hot filter, which on CPU costs more
  FLOPs than the layer itself; it is used only for input dilation.) The patch features come
  in (offset, channel) order; the norms below do not depend on that order."""
  n = len(filter_shape)
  if any(d != 1 for d in lhs_dilation):
    dims = ("N" + "DHW"[3 - n:] + "C", "DHW"[3 - n:] + "IO", "N" + "DHW"[3 - n:] + "C")
    return jax.lax.conv_general_dilated_patches(
        x, filter_shape=filter_shape, window_strides=window_strides, padding=padding,
        lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dims)
  return jnp.concatenate(_offset_slices(x, filter_shape=filter_shape,
                                        window_strides=window_strides, padding=padding,
                                        rhs_dilation=rhs_dilation), axis=-1)


def _conv_direct_grads(module: nn.Conv, x: jnp.ndarray, g: jnp.ndarray, plan: dict) -> dict:
  """Per-example Conv gradients {'kernel': [B, *filter, C_in, C_out], 'bias': [B, C_out]}, one
  contraction per filter offset over its strided input slice (no patch tensor)."""
  b, cin, cout = x.shape[0], x.shape[-1], g.shape[-1]
  gg = jnp.reshape(g, (b, -1, cout))
  slices = _offset_slices(x, filter_shape=plan["filter_shape"],
                          window_strides=plan["window_strides"], padding=plan["padding"],
                          rhs_dilation=plan["rhs_dilation"])
  pieces = [jnp.einsum("bti,bto->bio", jnp.reshape(xs, (b, -1, cin)), gg) for xs in slices]
  grads = {"kernel": jnp.reshape(jnp.stack(pieces, axis=1),
                                 (b, *plan["filter_shape"], cin, cout))}
  if module.use_bias:
    grads["bias"] = jnp.sum(gg, axis=1)
  return grads


def _conv_sq_norms(module: nn.Conv, x: jnp.ndarray, g: jnp.ndarray
                   ) -> tuple[jnp.ndarray, Optional[dict]]:
  """Per-example squared norm of the Conv kernel (and bias) gradient: the Gram trick on
  unfolded patches when T^2 (K + C) < T K C, else from the per-example gradients themselves,
  which are returned too (the clipped sum is then a weighted sum of them, not another
  weight-gradient convolution)."""
  plan = _conv_plan(module)
  n = len(plan["filter_shape"])
  if n > 3 or x.ndim != n + 2:
    raise ConfigError("config.privacy.clipping='ghost' supports 1-3 spatial dims with one batch "
                      "axis; use config.privacy.clipping='vmap'")
  b = x.shape[0]
  t = int(np.prod(g.shape[1:-1]))
  k = int(np.prod(plan["filter_shape"])) * x.shape[-1]
  c = g.shape[-1]
  gg = jnp.reshape(g, (b, -1, c))
  if t * (k + c) < k * c or any(d != 1 for d in plan["lhs_dilation"]):
    patches = _unfold(x, **plan)
    p = jnp.reshape(patches, (b, -1, patches.shape[-1]))
    if t * (k + c) < k * c:
      sq = jnp.sum(jnp.einsum("btk,bsk->bts", p, p) * jnp.einsum("btc,bsc->bts", gg, gg), (1, 2))
    else:
      sq = jnp.sum(jnp.einsum("btk,btc->bkc", p, gg) ** 2, axis=(1, 2))
    if module.use_bias:
      sq = sq + jnp.sum(jnp.sum(gg, axis=1) ** 2, axis=1)
    return sq, None
  grads = _conv_direct_grads(module, x, g, plan)
  sq = sum(jnp.sum(jnp.reshape(v * v, (b, -1)), axis=1) for v in grads.values())
  return sq, grads


def ghost_clipped_sum(loss_fn: Callable, params: PyTree, model_state: PyTree, batch: dict,
                      rng: jax.Array, coef_fn: Callable, *, clip_norm: float, clip: bool,
                      per_layer: bool, mask: Optional[dict[tuple, jnp.ndarray]] = None
                      ) -> tuple[PyTree, dict, jnp.ndarray, PyTree]:
  """Sum over real rows of clip_C(grad(coef_i * loss_i)) by ghost / book-keeping clipping.

  Returns (clipped sum, clip stats, losses [B], new model state); the stats carry the batch
  `logits` too. Equal to the vmap rule.
  """
  mask = mask or {}
  flat = clipping.flatten(params)
  masked_paths = {k[:-1] for k in mask}
  units = _discover(loss_fn, params, model_state, batch, rng, masked_paths)
  row_mask = batch["mask"].astype(jnp.float32)
  size = row_mask.shape[0]

  out_shapes: dict[tuple, Any] = {}
  copies = {}
  for path, unit in units.items():
    if unit.kind == "copy":
      copies[path] = jax.tree_util.tree_map(
          lambda v: jnp.broadcast_to(v, (size,) + v.shape),
          clipping.unflatten(_subtree(flat, path)))

  def forward(perts, copies):
    acts, guard = {}, {"on": False}

    def interceptor(next_fun, args, kwargs, context):
      if guard["on"] or not _is_method_of_interest(context):
        return next_fun(*args, **kwargs)
      path = tuple(context.module.path)
      unit = units.get(path)
      if unit is None:
        return next_fun(*args, **kwargs)
      if unit.kind == "copy":
        batched, rebuild = _split_batched(size, args, kwargs)

        def one(p_i, *rows):
          a, kw = rebuild(rows)
          out = unit.module.apply({"params": p_i}, *a, method=context.method_name, **kw)
          return jax.tree_util.tree_map(lambda o: o[0], out)
        guard["on"] = True
        try:
          return jax.vmap(one)(copies[path], *batched)
        finally:
          guard["on"] = False
      acts[path] = args[0]
      y = next_fun(*args, **kwargs)
      if perts is None:
        out_shapes[path] = jax.ShapeDtypeStruct(y.shape, y.dtype)
        return y
      return y + perts[path]

    with nn.intercept_methods(interceptor):
      losses, (new_state, logits) = loss_fn(params, model_state, batch, rng, train=True)
    return losses, (acts, new_state, logits)

  # Output shapes of the intercepted layers, for the zero perturbations.
  jax.eval_shape(lambda c: forward(None, c)[0], copies)
  perts = {p: jnp.zeros(s.shape, s.dtype) for p, s in out_shapes.items()}
  losses, vjp_fn, (acts, new_state, logits) = jax.vjp(forward, perts, copies, has_aux=True)
  weights = row_mask * coef_fn(jax.lax.stop_gradient(losses), batch)
  out_grads, copy_grads = vjp_fn(weights)

  # Per-example squared norms, one column per layer group (module path owning parameters).
  groups = clipping.layer_groups(params)
  group_index = {g: i for i, g in enumerate(groups)}
  columns: list[Any] = [jnp.zeros((size,), jnp.float32) for _ in groups]
  direct: dict[tuple, dict] = {}
  for path, unit in units.items():
    if unit.kind == "dense":
      columns[group_index[path]] = _dense_sq_norms(acts[path], out_grads[path],
                                                   unit.module.use_bias)
    elif unit.kind == "conv":
      columns[group_index[path]], per_ex = _conv_sq_norms(unit.module, acts[path],
                                                          out_grads[path])
      if per_ex is not None:
        direct[path] = per_ex
    elif unit.kind == "layer" and isinstance(unit.module, nn.Dense) and acts[path].ndim == 2:
      columns[group_index[path]] = _masked_dense_sq_norms(
          acts[path], out_grads[path], mask.get(path + ("kernel",)),
          mask.get(path + ("bias",)) if unit.module.use_bias else None, unit.module.use_bias)
    elif unit.kind == "layer":
      local = clipping.unflatten(_subtree(flat, path))

      def one(x_i, g_i, unit=unit, local=local):
        _, vjp = jax.vjp(lambda p: unit.module.apply({"params": p}, x_i[None]), local)
        return vjp(g_i[None])[0]
      per_ex = jax.vmap(one)(acts[path], out_grads[path])
      direct[path] = per_ex
      sq = 0.0
      for key, g in clipping.flatten(per_ex).items():
        if path + key in mask:
          g = g * mask[path + key]
        sq = sq + jnp.sum(jnp.reshape(g * g, (size, -1)), axis=1)
      columns[group_index[path]] = sq
    else:
      for key, g in clipping.flatten(copy_grads[path]).items():
        full = path + key
        if full in mask:
          g = g * mask[full]
        col = group_index[full[:-1]]
        columns[col] = columns[col] + jnp.sum(jnp.reshape(g * g, (size, -1)), axis=1)
  sq_norms = jnp.stack(columns, axis=1)
  factors = clipping.clip_factors(sq_norms, clip_norm=clip_norm, per_layer=per_layer, clip=clip)

  # Book-keeping: the clipped sum from the stored activations and output gradients.
  total: dict[tuple, Any] = {k: jnp.zeros_like(v) for k, v in flat.items()}
  for path, unit in units.items():
    if unit.kind == "copy":
      for key, g in clipping.flatten(copy_grads[path]).items():
        full = path + key
        total[full] = jnp.tensordot(factors[:, group_index[full[:-1]]], g, axes=1)
      continue
    c = factors[:, group_index[path]]
    if path in direct:  # per-example gradients already formed: weight them
      for key, v in clipping.flatten(direct[path]).items():
        total[path + key] = jnp.tensordot(c, v, axes=1)
      continue
    local = clipping.unflatten(_subtree(flat, path))
    x = acts[path]
    _, vjp = jax.vjp(lambda p, unit=unit, x=x: unit.module.apply({"params": p}, x), local)
    g = out_grads[path]
    weighted = vjp(g * c.reshape((-1,) + (1,) * (g.ndim - 1)))[0]
    for key, v in clipping.flatten(weighted).items():
      total[path + key] = v
  stats = {**clipping.clip_stats(sq_norms, factors, row_mask), "logits": logits}
  return clipping.unflatten(total), stats, losses, new_state
