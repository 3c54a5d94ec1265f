"""Hidden Trigger Backdoor (Saha et al. 2020; benchmark `craft_poisons_htbd.py`), spec
clip-poisoning.md §7.

A patch trigger (5x5 by default) is pasted at (size − patch − 5) on target-class images; the
poisons start at clean base-class images and are moved, in feature space, onto the patched
images: each iteration pairs poisons and patched images one-to-one greedily by closest
feature distance and takes a plain gradient step on Σ ‖φ(patched_paired) − φ(poison)‖²
(lr · 0.95^(it // 2000)), then clips the perturbation to ±eps and the image to [0, 1]; it
stops once the loss falls below a threshold. The reference's pairing masks only the chosen
(patched, poison) entry, so one patched image can serve several poisons; here the chosen
row and column are both removed, a true one-to-one greedy matching.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from robustdata.poisoning import gradient_matching as gm
from robustdata.poisoning.supervised_triggers import fixed_position, stamp_trigger

Variables = Any
FeaturesFn = Callable[[Variables, jax.Array], jax.Array]
_HIGHEST = jax.lax.Precision.HIGHEST


def paste_trigger(images: np.ndarray, trigger: np.ndarray, *, margin: int = 5) -> np.ndarray:
  """Pastes the square `trigger` at (size − patch − margin) in both axes of every image."""
  pos = fixed_position(images.shape[1], trigger.shape[0], margin=margin)
  return stamp_trigger(images, trigger, np.asarray(pos))


def pairwise_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """Euclidean distances (m, n) between the rows of a (m, d) and b (n, d)."""
  sq = (jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :]
        - 2.0 * jnp.matmul(a, b.T, precision=_HIGHEST))
  return jnp.sqrt(jnp.maximum(sq, 0.0))


@jax.jit
def greedy_pairing(dist: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  """Greedy one-to-one matching on dist (m patched rows, n <= m poison columns): repeatedly
  take the smallest remaining entry (first in row-major order on ties) and remove its row and
  column. Returns pair (n,): poison j is paired with patched row pair[j]. With `mask` (n,) only
  the columns with mask 1 are paired (at most m of them; the others get row 0)."""
  m, n = dist.shape
  if mask is not None:
    dist = jnp.where(mask[None, :] > 0, dist, jnp.inf)

  def pick(_, carry):
    d, pair = carry
    flat = jnp.argmin(d)
    i, j = flat // n, flat % n
    if mask is None:
      pair = pair.at[j].set(i.astype(jnp.int32))
    else:  # once the real columns are paired only removed (infinite) entries remain
      pair = jnp.where(jnp.isfinite(d[i, j]), pair.at[j].set(i.astype(jnp.int32)), pair)
    d = d.at[i, :].set(jnp.inf).at[:, j].set(jnp.inf)
    return d, pair

  _, pair = jax.lax.fori_loop(0, n, pick, (dist, jnp.zeros(n, jnp.int32)))
  return pair


def htb_loss(patched_features: jax.Array, poison_features: jax.Array, pair: jax.Array,
             mask: Optional[jax.Array] = None) -> jax.Array:
  """Σ_j ‖φ(patched[pair[j]]) − φ(poison_j)‖² (the reference's squared Frobenius norm), over
  the poisons with mask 1 when `mask` (n,) is given."""
  sq = (patched_features[pair] - poison_features) ** 2
  return jnp.sum(sq) if mask is None else jnp.sum(sq * mask[:, None])


def craft_hidden_trigger(variables: Variables, features_fn: FeaturesFn, x_base: np.ndarray,
                         x_patched: np.ndarray, *, eps: float, lr: float = 0.001,
                         iterations: int = 5000, lr_decay: float = 0.95, decay_every: int = 2000,
                         loss_threshold: float = 10.0, mesh: Optional[Mesh] = None
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Crafts HTB poisons from the bases (n, H, W, C) towards the patched target-class images
  (m >= n, H, W, C). Returns (perturbations (n, H, W, C), loss before each step taken); the
  loop stops after the step at which the loss first falls below `loss_threshold`. With `mesh`
  the poisons and bases are sharded on its 'data' axis (padded with masked rows to a multiple
  of its size, left out of the pairing and the loss) and the variables and patched images
  replicated; the result matches the unsharded one up to float32 rounding."""
  n = len(x_base)
  x_patched = np.asarray(x_patched, np.float32)
  if x_patched.shape[0] < n:
    raise ValueError(f"need at least as many patched images ({x_patched.shape[0]}) as poisons "
                     f"({n})")
  x_base, mask, (variables, x_patched), constrain = gm.place_poisons(
      mesh, x_base, (variables, x_patched))

  @jax.jit
  def run(variables, x_base, x_patched, mask):
    target = jax.lax.stop_gradient(features_fn(variables, x_patched))

    def loss_fn(poisons):
      feats = features_fn(variables, poisons)
      pair = greedy_pairing(jax.lax.stop_gradient(pairwise_distances(target, feats)), mask)
      return htb_loss(target, feats, pair, mask)

    loss_and_grad = jax.value_and_grad(loss_fn)

    def cond(carry):
      it, _, last, _ = carry
      return (it < iterations) & ~(last < loss_threshold)

    def body(carry):
      it, poisons, _, losses = carry
      loss, grad = loss_and_grad(poisons)
      step = lr * lr_decay ** (it // decay_every).astype(jnp.float32)
      poisons = poisons - step * grad
      poisons = jnp.clip(x_base + jnp.clip(poisons - x_base, -eps, eps), 0.0, 1.0)
      return it + 1, constrain(poisons), loss, losses.at[it].set(loss)

    init = (jnp.zeros((), jnp.int32), constrain(x_base), jnp.asarray(jnp.inf, jnp.float32),
            jnp.full((iterations,), jnp.nan, jnp.float32))
    steps, poisons, _, losses = jax.lax.while_loop(cond, body, init)
    return poisons - x_base, losses, steps

  delta, losses, steps = run(variables, x_base, x_patched, mask)
  return np.asarray(delta)[:n], np.asarray(losses)[:int(steps)]
