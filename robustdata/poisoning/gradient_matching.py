"""Gradient matching poisons (Witches' Brew, Geiping et al. 2021), spec clip-poisoning.md §7.

Perturb poison images x_k of the base class (|δ|∞ <= eps, x + δ in [0, 1]) so that the
training gradient on them points where the target gradient does:
  g_t = ∇θ CE(f(x_t), y_adv),  g_p(δ) = ∇θ mean_k CE(f(aug(x_k + δ_k)), y_base),
  objective = 1 - <g_t, g_p> / (‖g_t‖ ‖g_p‖)   over all parameters,
minimised by signed Adam (Adam on sign(∇δ)) with second-order autodiff through g_p.

Models enter as `logits_fn(variables, x) -> logits` with `variables = {"params": ...,
**model_state}` in eval mode; images are NHWC in pixel space [0, 1] and eps is in pixel units.
The reference optimises δ in normalised units (δ/std), so its step size 0.1 per sign step
corresponds to 0.1·std pixels; pass `lr` scaled by the data std to match it exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from robustdata import losses as losses_lib

PyTree = Any
Variables = Any  # {"params": ..., **model_state}
LogitsFn = Callable[[Variables, jax.Array], jax.Array]
# retrain(key, perturbations[N, H, W, C] of the current poisons) -> new substitute variables.
RetrainFn = Callable[[jax.Array, np.ndarray], Variables]
# gradient(variables) -> the gradient the poisons match (the target's, or the stamped sources').
GradientFn = Callable[[Variables], PyTree]

_HIGHEST = jax.lax.Precision.HIGHEST
_ADAM = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)  # torch.optim.Adam's defaults


def model_fns(model) -> tuple[LogitsFn, Callable[[Variables, jax.Array], jax.Array]]:
  """(logits_fn, features_fn) in eval mode for a robustdata classifier (`return_features`)."""

  def logits_fn(variables, x):
    return model.apply(variables, x, train=False)

  def features_fn(variables, x):
    return model.apply(variables, x, train=False, return_features=True)[1]

  return logits_fn, features_fn


def mean_cross_entropy(logits_fn: LogitsFn, variables: Variables, x: jax.Array, y: jax.Array,
                       mask: Optional[jax.Array] = None) -> jax.Array:
  """Mean CE over the rows with mask 1 (all rows when `mask` is None)."""
  losses = losses_lib.cross_entropy(logits_fn(variables, x), y)
  if mask is None:
    return jnp.mean(losses)
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def param_gradient(logits_fn: LogitsFn, variables: Variables, x: jax.Array, y: jax.Array,
                   mask: Optional[jax.Array] = None) -> PyTree:
  """∇ over variables["params"] of the (masked) mean CE; differentiable in x."""

  def loss(params):
    return mean_cross_entropy(logits_fn, {**variables, "params": params}, x, y, mask)

  return jax.grad(loss)(variables["params"])


@functools.lru_cache(maxsize=None)
def _sum_gradient_fn(logits_fn: LogitsFn) -> Callable:
  def sum_grad(variables, x, y, mask):
    def loss(params):
      losses = losses_lib.cross_entropy(logits_fn({**variables, "params": params}, x), y)
      return jnp.sum(losses * mask)
    return jax.grad(loss)(variables["params"])
  return jax.jit(sum_grad)


def target_gradient(logits_fn: LogitsFn, variables: Variables, x_target: np.ndarray,
                    y_adv: np.ndarray, *, batch_size: Optional[int] = None) -> PyTree:
  """g_t = ∇θ mean CE(f(x_target), y_adv), accumulated over chunks of `batch_size` rows
  (static padded shapes), so thousands of triggered sources fit in memory."""
  x_target = np.asarray(x_target, np.float32)
  y_adv = np.broadcast_to(np.asarray(y_adv, np.int32), (len(x_target),))
  n = len(x_target)
  size = n if batch_size is None else max(1, min(batch_size, n))
  fn = _sum_gradient_fn(logits_fn)
  total = None
  for start in range(0, n, size):
    xb, yb = x_target[start:start + size], y_adv[start:start + size]
    mb = np.ones(len(xb), np.float32)
    if len(xb) < size:
      pad = size - len(xb)
      xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), np.float32)])
      yb = np.concatenate([yb, np.zeros(pad, np.int32)])
      mb = np.concatenate([mb, np.zeros(pad, np.float32)])
    g = fn(variables, xb, yb, mb)
    total = g if total is None else jax.tree_util.tree_map(jnp.add, total, g)
  return jax.tree_util.tree_map(lambda t: t / n, total)


def cosine_distance(g1: PyTree, g2: PyTree) -> jax.Array:
  """1 - cos between two gradient pytrees, flattened over all leaves."""
  l1, l2 = jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)
  dot = sum(jnp.sum(a * b) for a, b in zip(l1, l2))
  n1 = jnp.sqrt(sum(jnp.sum(a * a) for a in l1))
  n2 = jnp.sqrt(sum(jnp.sum(b * b) for b in l2))
  return 1.0 - dot / jnp.maximum(n1 * n2, jnp.finfo(jnp.float32).tiny)


def translate(images: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
  """Shifts image i by (dy[i], dx[i]) pixels (down/right positive), bilinear, zero padding;
  a linear map in the pixels, so it is differentiable and exact for integer shifts."""
  _, h, w, _ = images.shape

  def hat(shift, n):  # (B, n, n): out[i] = sum_k max(0, 1 - |i - shift - k|) in[k]
    i = jnp.arange(n, dtype=jnp.float32)
    return jnp.maximum(0.0, 1.0 - jnp.abs(i[None, :, None] - shift[:, None, None] - i[None, None]))

  out = jnp.einsum("bik,bkwc->biwc", hat(dy, h), images, precision=_HIGHEST)
  return jnp.einsum("bjl,bilc->bijc", hat(dx, w), out, precision=_HIGHEST)


def differentiable_augment(key: jax.Array, images: jax.Array, *, max_shift: float = 4.0,
                           flip: bool = True,
                           example_ids: Optional[jax.Array] = None) -> jax.Array:
  """Random translation by U(-max_shift, max_shift) pixels per axis (bilinear, zero padding)
  and a horizontal flip with probability 1/2, per image. With `example_ids` each image draws
  from fold_in(key, id), so the draw does not depend on batch layout or padding."""
  b = images.shape[0]
  ids = jnp.arange(b) if example_ids is None else example_ids
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ids)
  shifts = jax.vmap(lambda k: jax.random.uniform(k, (2,), minval=-max_shift,
                                                 maxval=max_shift))(keys)
  out = translate(images, shifts[:, 0], shifts[:, 1])
  if flip:
    coin = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 1)))(keys)
    out = jnp.where(coin[:, None, None, None], out[:, :, ::-1, :], out)
  return out


def matching_loss(logits_fn: LogitsFn, variables: Variables, target_grad: PyTree,
                  x_base: jax.Array, delta: jax.Array, y_base: jax.Array, *,
                  mask: Optional[jax.Array] = None, key: Optional[jax.Array] = None,
                  augment: bool = False, max_shift: float = 4.0,
                  example_ids: Optional[jax.Array] = None) -> jax.Array:
  """1 - cos(g_t, g_p) for one poison batch; differentiate in `delta` for the poison step."""
  x = x_base + delta
  if augment:
    if key is None:
      raise ValueError("matching_loss(augment=True) needs a PRNG key")
    x = differentiable_augment(key, x, max_shift=max_shift, example_ids=example_ids)
  return cosine_distance(target_grad, param_gradient(logits_fn, variables, x, y_base, mask))


def project(delta: jax.Array, x_base: jax.Array, eps: float) -> jax.Array:
  """Clips δ to the ℓ∞ ball of radius eps, then so that x_base + δ stays in [0, 1]."""
  delta = jnp.clip(delta, -eps, eps)
  return jnp.clip(delta, -x_base, 1.0 - x_base)


def init_adam(delta: jax.Array) -> optax.OptState:
  return _ADAM.init(delta)


def craft_step(delta: jax.Array, adam_state: optax.OptState, grad: jax.Array,
               x_base: jax.Array, *, lr: float, eps: float
               ) -> tuple[jax.Array, optax.OptState]:
  """One signed-Adam step on δ (Adam fed sign(grad)), then the projection."""
  updates, adam_state = _ADAM.update(jnp.sign(grad), adam_state)
  return project(delta - lr * updates, x_base, eps), adam_state


def reference_lr(pbatch: int) -> float:
  """The reference step size 0.1 · pbatch / 512 (its "rule 2" for Adam variants)."""
  return 0.1 * pbatch / 512


def milestones(iterations: int) -> tuple[int, ...]:
  """MultiStep milestones of the reference, iterations // (2.667, 1.6, 1.142) ≈ 3/8, 5/8, 7/8
  (93, 156, 218 for 250)."""
  return tuple(int(iterations // d) for d in (2.667, 1.6, 1.142))


def lr_at(it: int, *, lr: float, iterations: int, gamma: float = 0.1) -> float:
  """Step size at 0-based iteration `it`: lr · gamma^(number of milestones <= it)."""
  return lr * gamma ** sum(it >= m for m in milestones(iterations))


@dataclasses.dataclass
class CraftResult:
  """The chosen restart's perturbations (N, H, W, C), its final objective, and the objective
  per iteration of every restart (restarts, iterations)."""
  delta: np.ndarray
  loss: float
  losses: np.ndarray
  restart: int


def _make_iteration(logits_fn: LogitsFn, *, augment: bool, max_shift: float) -> Callable:
  """iteration(variables, g_t, x, y, mask, ids, δ, adam, lr, eps, key) -> (δ, adam, loss):
  every poison batch (leading axis of the (nb, pb, ...) inputs) adds its own objective's
  gradient, then one signed-Adam step on the accumulated gradient."""

  def batch_loss(delta_b, variables, target_grad, xb, yb, mb, ib, key):
    return matching_loss(logits_fn, variables, target_grad, xb, delta_b, yb, mask=mb, key=key,
                         augment=augment, max_shift=max_shift, example_ids=ib)

  value_and_grad = jax.value_and_grad(batch_loss)

  def iteration(variables, target_grad, x, y, mask, ids, delta, adam_state, lr, eps, key):
    # The batches (a few) are unrolled rather than scanned: XLA:CPU runs convolutions inside a
    # loop body several times slower (benchmarks/poisoning.py: 5x per iteration).
    parts = [value_and_grad(delta[b], variables, target_grad, x[b], y[b], mask[b], ids[b], key)
             for b in range(x.shape[0])]
    losses = jnp.stack([loss for loss, _ in parts])
    grads = jnp.stack([grad for _, grad in parts])
    delta, adam_state = craft_step(delta, adam_state, grads, x, lr=lr, eps=eps)
    return delta, adam_state, jnp.mean(losses)

  return jax.jit(iteration)


def _layout(n: int, pbatch: int, devices: int) -> tuple[int, int, np.ndarray]:
  """Batches of `pbatch` poisons (the last may hold fewer), each padded to a multiple of the
  device count: returns (num_batches, padded rows, (num_batches, padded) example index, -1 for
  padding)."""
  pbatch = max(1, min(pbatch, n))
  nb = -(-n // pbatch)
  rows = -(-pbatch // devices) * devices
  idx = np.full((nb, rows), -1, np.int64)
  for b in range(nb):
    real = np.arange(b * pbatch, min((b + 1) * pbatch, n))
    idx[b, :len(real)] = real
  return nb, rows, idx


def _gather(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
  out = np.zeros((*idx.shape, *a.shape[1:]), a.dtype)
  out[idx >= 0] = a[idx[idx >= 0]]
  return out


def shard_poisons(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
  """For attacks that step all poisons at once: the arrays (N, ...) padded with zero rows to a
  multiple of the mesh's 'data' size (one batch of `_layout`) and sharded on it, then the mask
  (rows,) that is 1 on the N real rows."""
  _, _, idx = _layout(len(arrays[0]), len(arrays[0]), mesh.shape["data"])
  rows = NamedSharding(mesh, P("data"))
  padded = [_gather(np.asarray(a), idx[0]) for a in arrays]
  return tuple(jax.device_put(a, rows) for a in (*padded, (idx[0] >= 0).astype(np.float32)))


def constrain_poisons(tree: PyTree, mesh: Mesh) -> PyTree:
  """Inside jit: keeps every per-poison leaf (any with a leading axis) sharded on 'data', so
  loop carries such as Adam's moments stay split like the poisons."""
  rows = NamedSharding(mesh, P("data"))
  return jax.tree_util.tree_map(
      lambda a: jax.lax.with_sharding_constraint(a, rows) if a.ndim else a, tree)


def place_poisons(mesh: Optional[Mesh], x_base: np.ndarray, replicated: Any
                  ) -> tuple[jax.Array, Optional[jax.Array], Any, Callable[[PyTree], PyTree]]:
  """(bases, mask, replicated, constrain) for an attack that steps all poisons at once: without
  a mesh the bases on the default device, no mask and an identity `constrain`; with one the
  bases sharded by `shard_poisons` (mask None when no row was padded, so the objective is the
  unsharded one), `replicated` (variables, targets) replicated, and `constrain_poisons`."""
  if mesh is None:
    return (jnp.asarray(x_base, jnp.float32), None, jax.tree.map(jnp.asarray, replicated),
            lambda tree: tree)
  bases, mask = shard_poisons(mesh, np.asarray(x_base, np.float32))
  mask = None if len(mask) == len(x_base) else mask
  replicated = jax.device_put(replicated, NamedSharding(mesh, P()))
  return bases, mask, replicated, lambda tree: constrain_poisons(tree, mesh)


def init_delta(key: jax.Array, x_base: np.ndarray, eps: float) -> np.ndarray:
  """The reference start: randn · eps, clipped to ±eps (and to the image bounds)."""
  delta = jax.random.normal(key, x_base.shape, jnp.float32) * eps
  return np.asarray(project(delta, jnp.asarray(x_base), eps))


def craft(logits_fn: LogitsFn, variables: Variables, target_grad: PyTree, x_base: np.ndarray,
          y_base: np.ndarray, *, key: jax.Array, eps: float, iterations: int = 250,
          lr: Optional[float] = None, pbatch: int = 512, restarts: int = 8, gamma: float = 0.1,
          augment: bool = True, max_shift: float = 4.0, mesh: Optional[Mesh] = None,
          retrain: Optional[RetrainFn] = None, gradient: Optional[GradientFn] = None,
          retrain_every: int = 0,
          log: Optional[Callable[[int, int, float], None]] = None) -> CraftResult:
  """Crafts perturbations for the poisons x_base (N, H, W, C) labelled y_base (N,).

  Per restart: δ from `init_delta`; each iteration sums the gradients of the per-batch
  objectives over all `pbatch`-sized poison batches, takes one signed-Adam step at
  `lr_at(it)` (default lr `reference_lr(pbatch)`) and projects. The restart whose objective
  (mean over batches, last iteration) is lowest wins. With `mesh`, every batch is sharded on
  its 'data' axis and variables are replicated; batches are padded with masked rows to a
  multiple of the device count, and augmentation draws per example id, so the result does not
  depend on the number of devices. With `retrain` and `retrain_every` = R, after iterations
  it % R == 0 (not the first nor the last) the substitute is replaced by `retrain(key, δ)` and
  the matched gradient recomputed as `gradient(new variables)`, as Sleeper Agent retrains its
  substitute; each restart starts from the given variables. `log(restart, it, loss)` is called
  every iteration.
  """
  if retrain is not None and gradient is None:
    raise ValueError("craft(retrain=...) needs gradient=: the gradient to match recomputed for "
                     "the retrained substitute")
  x_base = np.asarray(x_base, np.float32)
  y_base = np.broadcast_to(np.asarray(y_base, np.int32), (len(x_base),))
  n = len(x_base)
  lr = reference_lr(pbatch) if lr is None else lr
  devices = 1 if mesh is None else mesh.shape["data"]
  _, rows, idx = _layout(n, pbatch, devices)
  x_b = _gather(x_base, idx)
  y_b = _gather(y_base, idx)
  mask_b = (idx >= 0).astype(np.float32)
  ids_b = idx.astype(np.int32)
  put_data = put_rep = jnp.asarray
  if mesh is not None:
    data_sharding = NamedSharding(mesh, P(None, "data"))
    rep_sharding = NamedSharding(mesh, P())
    put_data = lambda a: jax.device_put(a, data_sharding)
    put_rep = lambda a: jax.device_put(a, rep_sharding)
  x_b, y_b, mask_b, ids_b = map(put_data, (x_b, y_b, mask_b, ids_b))
  iteration = _make_iteration(logits_fn, augment=augment, max_shift=max_shift)

  results, scores, history = [], [], np.zeros((restarts, iterations), np.float32)
  for r in range(restarts):
    init_key, aug_key, retrain_key = jax.random.split(jax.random.fold_in(key, r), 3)
    v = jax.tree_util.tree_map(put_rep, variables)
    g_t = jax.tree_util.tree_map(put_rep, target_grad)
    delta = put_data(_gather(init_delta(init_key, x_base, eps), idx))
    # Adam's step count placed like the iteration's output, else its second call recompiles.
    adam_state = jax.tree_util.tree_map(lambda a: put_rep(a) if a.ndim == 0 else a,
                                        init_adam(delta))
    loss = np.inf
    for it in range(iterations):
      step_lr = np.float32(lr_at(it, lr=lr, iterations=iterations, gamma=gamma))
      delta, adam_state, loss_dev = iteration(v, g_t, x_b, y_b, mask_b, ids_b, delta, adam_state,
                                              step_lr, np.float32(eps),
                                              jax.random.fold_in(aug_key, it))
      loss = float(loss_dev)
      history[r, it] = loss
      if log is not None:
        log(r, it, loss)
      if (retrain is not None and retrain_every and it % retrain_every == 0 and it != 0
          and it != iterations - 1):
        current = np.asarray(delta)[idx >= 0]
        new_v = retrain(jax.random.fold_in(retrain_key, it), current)
        v = jax.tree_util.tree_map(put_rep, new_v)
        g_t = jax.tree_util.tree_map(put_rep, gradient(new_v))
    results.append(np.asarray(delta)[idx >= 0])
    scores.append(loss)
  best = int(np.argmin(scores))
  return CraftResult(delta=results[best], loss=float(scores[best]), losses=history, restart=best)


def objective(logits_fn: LogitsFn, variables: Variables, target_grad: PyTree,
              x_base: np.ndarray, delta: np.ndarray, y_base: np.ndarray, *,
              pbatch: int = 512) -> float:
  """The crafting objective without augmentation: mean over `pbatch` batches of 1 - cos."""
  x_base = np.asarray(x_base, np.float32)
  y_base = np.broadcast_to(np.asarray(y_base, np.int32), (len(x_base),))
  _, _, idx = _layout(len(x_base), pbatch, 1)
  fn = jax.jit(functools.partial(matching_loss, logits_fn))
  vals = [fn(variables, target_grad, x_base[i[i >= 0]], jnp.asarray(delta)[i[i >= 0]],
             y_base[i[i >= 0]]) for i in idx]
  return float(np.mean(vals))

