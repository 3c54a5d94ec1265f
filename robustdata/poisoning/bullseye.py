"""Bullseye Polytope, "mean" mode (Aghakhani et al. 2021; benchmark `craft_poisons_bp.py`),
spec clip-poisoning.md §7.

Moves the mean penultimate feature of the poisons onto the target's:
  loss = mean over substitutes of ‖mean_k φ(x_k) − φ(x_t)‖ / ‖φ(x_t)‖,
with Adam (lr 0.04, β = (0.9, 0.999)) on the poison images, started at the bases; after each
step the perturbation is clipped to ±eps and the image to [0, 1] (pixel space).
The reference takes its Adam steps in normalised units (x/std); Adam's step is about lr per
coordinate, so its 0.04 is 0.04·std pixels: pass `lr` scaled by the data std to match.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from robustdata.poisoning import gradient_matching as gm

Variables = Any
FeaturesFn = Callable[[Variables, jax.Array], jax.Array]
Substitute = tuple[Variables, FeaturesFn]


def bullseye_loss(poison_features: jax.Array, target_features: jax.Array,
                  mask: Optional[jax.Array] = None) -> jax.Array:
  """‖mean_k φ_k − φ_t‖ / ‖φ_t‖ for poison features (K, d) and target features (d,) or (T, d)
  (several targets: the ratio averaged over them); with `mask` (K,) the mean is over the rows
  with mask 1 (padding excluded)."""
  target = jnp.atleast_2d(target_features)
  if mask is None:
    centre = jnp.mean(poison_features, axis=0)
  else:
    centre = jnp.sum(poison_features * mask[:, None], axis=0) / jnp.maximum(jnp.sum(mask), 1.0)
  diff = centre[None] - target
  return jnp.mean(jnp.linalg.norm(diff, axis=-1) / jnp.linalg.norm(target, axis=-1))


def bullseye_objective(substitutes: Sequence[Substitute], poisons: jax.Array,
                       target_features: Sequence[jax.Array],
                       mask: Optional[jax.Array] = None) -> jax.Array:
  """`bullseye_loss` averaged over the substitutes ((variables, features_fn) pairs), with each
  substitute's (fixed) target features; `mask` marks the real poisons."""
  total = 0.0
  for (variables, features_fn), tf in zip(substitutes, target_features):
    total = total + bullseye_loss(features_fn(variables, poisons), tf, mask)
  return total / len(substitutes)


def clip_poisons(poisons: jax.Array, x_base: jax.Array, eps: float) -> jax.Array:
  """Perturbation clipped to ±eps, then the image to [0, 1]."""
  return jnp.clip(x_base + jnp.clip(poisons - x_base, -eps, eps), 0.0, 1.0)


def craft_bullseye(substitutes: Sequence[Substitute], x_base: np.ndarray, x_target: np.ndarray, *,
                   eps: float, lr: float = 0.04, iterations: int = 1200, b1: float = 0.9,
                   b2: float = 0.999, mesh: Optional[Mesh] = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Crafts Bullseye Polytope poisons from the bases (K, H, W, C) against the target image(s)
  (H, W, C) or (T, H, W, C). Returns (perturbations (K, H, W, C), objective before each step
  (iterations,)); the poisons are clip(x_base + perturbation, 0, 1) up to float rounding.
  With `mesh` the poisons, bases and Adam moments are sharded on its 'data' axis (padded with
  masked rows to a multiple of its size) and the substitutes and targets replicated; the result
  matches the unsharded one up to float32 rounding."""
  n = len(x_base)
  x_target = np.asarray(x_target, np.float32)
  if x_target.ndim == 3:
    x_target = x_target[None]
  variables = [v for v, _ in substitutes]
  fns = [f for _, f in substitutes]
  tx = optax.adam(lr, b1=b1, b2=b2, eps=1e-8)
  x_base, mask, (variables, x_target), constrain = gm.place_poisons(
      mesh, x_base, (variables, x_target))

  @jax.jit
  def run(variables, x_base, x_target, mask):
    subs = list(zip(variables, fns))
    targets = [jax.lax.stop_gradient(f(v, x_target)) for v, f in subs]
    loss_and_grad = jax.value_and_grad(lambda p: bullseye_objective(subs, p, targets, mask))

    def body(carry, _):
      poisons, opt_state = carry
      loss, grad = loss_and_grad(poisons)
      updates, opt_state = tx.update(grad, opt_state, poisons)
      poisons = clip_poisons(optax.apply_updates(poisons, updates), x_base, eps)
      return constrain((poisons, opt_state)), loss

    init = constrain((x_base, tx.init(x_base)))
    (poisons, _), losses = jax.lax.scan(body, init, None, length=iterations)
    return poisons - x_base, losses

  delta, losses = run(variables, x_base, x_target, mask)
  return np.asarray(delta)[:n], np.asarray(losses)
