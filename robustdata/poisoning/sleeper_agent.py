"""Sleeper Agent (Souri et al. 2022), spec clip-poisoning.md §7: a hidden-trigger backdoor
crafted by gradient matching.

The "target" gradient is ∇θ CE over every training image of the source class stamped with a
patch trigger at a random (seeded) location, labelled as the target class. Poisons are the
target-class training images with the largest per-example gradient norm; they are crafted
with the gradient-matching objective and signed Adam (`gradient_matching.craft`), and the
substitute is retrained from scratch every R iterations (through a `retrain` callback the
stage supplies), after which the source gradient is recomputed.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from robustdata.poisoning import gradient_matching as gm
from robustdata.poisoning.supervised_triggers import random_positions, stamp_trigger

__all__ = ["craft_sleeper_agent", "gradient_norms", "random_positions", "select_poisons",
           "source_gradient", "stamp_trigger", "stamp_random"]

# retrain(key, perturbations[N, H, W, C] of the current poisons) -> substitute variables.
RetrainFn = gm.RetrainFn


def stamp_random(images: np.ndarray, trigger: np.ndarray, *, seed: int) -> np.ndarray:
  """Stamps `trigger` on every image at a random location drawn from `seed`."""
  rng = np.random.default_rng(seed)
  pos = random_positions(len(images), images.shape[1:3], trigger.shape[0], rng=rng)
  return stamp_trigger(images, trigger, pos)


@functools.lru_cache(maxsize=None)
def _norm_fn(logits_fn: gm.LogitsFn) -> Callable:
  def one(variables, xi, yi):
    g = gm.param_gradient(logits_fn, variables, xi[None], yi[None])
    return jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(g)))
  return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def gradient_norms(logits_fn: gm.LogitsFn, variables: gm.Variables, x: np.ndarray,
                   y: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
  """Per-example ‖∇θ CE(f(x_i), y_i)‖ over all params, (N,), in padded chunks."""
  x = np.asarray(x, np.float32)
  y = np.broadcast_to(np.asarray(y, np.int32), (len(x),))
  size = max(1, min(batch_size, len(x)))
  fn = _norm_fn(logits_fn)
  out = []
  for start in range(0, len(x), size):
    xb, yb = x[start:start + size], y[start:start + size]
    n = len(xb)
    if n < size:
      xb = np.concatenate([xb, np.zeros((size - n, *xb.shape[1:]), np.float32)])
      yb = np.concatenate([yb, np.zeros(size - n, np.int32)])
    out.append(np.asarray(fn(variables, xb, yb))[:n])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def select_poisons(logits_fn: gm.LogitsFn, variables: gm.Variables, x_candidates: np.ndarray,
                   y_candidates: np.ndarray, budget: int, *, batch_size: int = 256) -> np.ndarray:
  """Positions (into the candidates) of the `budget` largest per-example gradient norms, in
  decreasing order of norm (ties: lower position first)."""
  norms = gradient_norms(logits_fn, variables, x_candidates, y_candidates, batch_size=batch_size)
  return np.argsort(-norms, kind="stable")[:budget].astype(np.int64)


def source_gradient(logits_fn: gm.LogitsFn, variables: gm.Variables, x_source_stamped: np.ndarray,
                    target_class: int, *, batch_size: Optional[int] = 512) -> gm.PyTree:
  """∇θ mean CE(f(stamped sources), target_class)."""
  y = np.full(len(x_source_stamped), target_class, np.int32)
  return gm.target_gradient(logits_fn, variables, x_source_stamped, y, batch_size=batch_size)


def craft_sleeper_agent(logits_fn: gm.LogitsFn, variables: gm.Variables, x_poison: np.ndarray,
                        x_source_stamped: np.ndarray, *, target_class: int, key: jax.Array,
                        eps: float, retrain: Optional[RetrainFn] = None, retrain_every: int = 50,
                        iterations: int = 250, restarts: int = 1, lr: Optional[float] = None,
                        pbatch: int = 512, augment: bool = True, max_shift: float = 4.0,
                        source_batch_size: Optional[int] = 512, mesh: Optional[Mesh] = None,
                        log=None) -> gm.CraftResult:
  """Crafts perturbations of the selected target-class poisons `x_poison` (labelled
  `target_class`) so their gradient matches the stamped-source gradient; with `retrain`, the
  substitute is replaced by `retrain(key, δ)` every `retrain_every` iterations (reference:
  from scratch on the data with the current poisons) and the source gradient recomputed."""
  gradient = functools.partial(source_gradient, logits_fn, x_source_stamped=x_source_stamped,
                               target_class=target_class, batch_size=source_batch_size)
  y = np.full(len(x_poison), target_class, np.int32)
  return gm.craft(logits_fn, variables, gradient(variables), x_poison, y, key=key, eps=eps,
                  iterations=iterations, lr=lr, pbatch=pbatch, restarts=restarts, augment=augment,
                  max_shift=max_shift, mesh=mesh, retrain=retrain, gradient=gradient,
                  retrain_every=retrain_every, log=log)
