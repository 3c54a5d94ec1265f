"""Example ordering for without-replacement SGD on convex problems (spec §7, arXiv 2306.15848).

Problems: per-example losses f_i(w) = l(a_i . w, y_i) + l2/2 ||w||^2, F = mean_i f_i, with l the
squared error (`least_squares`) or the logistic loss on labels +-1 (`logistic`); synthetic data
with a set condition number, or the embedded digits. The exact optimum, the objective and the
constants are float64 NumPy; the SGD epochs, orderings and the bound are jittable JAX kernels.

The bound (`epoch_bound`): for an epoch from w_0 with (mini-)batch steps w_k = w_{k-1} -
eta_k gbar_k(w_{k-1}), every f_i L-smooth and gbar_k the mean gradient of batch k,
  ||w_K - w*|| <= ||w_0 - w* - sum_k eta_k gbar_k(w_0)|| + L sum_k eta_k D_{k-1},
  D_k = (1 + eta_k L) D_{k-1} + eta_k ||gbar_k(w_0)||,  D_0 = 0  (D_k bounds ||w_k - w_0||),
which depends on the order only through the start-of-epoch gradients. Its second term is
L sum_k omega_k ||gbar_k(w_0)|| with position weights omega_k decreasing in k for any
non-increasing step schedule, so it is smallest for ascending norms (rearrangement); with
constant steps the first term does not depend on the order, so ascending minimises the bound.
With decreasing steps the first term rewards large steps on gradients aligned with w_0 - w*
(large norms far from w*), so the better direction can flip; `bound` picks, each epoch, the
sorted direction with the smaller bound (an oracle: it reads w*).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.data.dataset import Dataset
from robustdata.registry import ConfigError

LOSSES = ("least_squares", "logistic")
ORDERINGS = ("random", "fixed", "ascending", "descending", "grab", "bound")
SCHEDULES = ("constant", "decreasing")
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class ConvexProblem:
  """A finite-sum problem in float64: features x (n, d), targets y (n,) (+-1 for logistic)."""
  name: str
  loss: str
  x: np.ndarray
  y: np.ndarray
  l2: float


def _check_loss(loss: str) -> None:
  if loss not in LOSSES:
    raise ConfigError(f"loss={loss!r} is not a known loss; allowed: {list(LOSSES)}")


def synthetic_problem(loss: str, *, n: int = 512, d: int = 20, condition_number: float = 100.0,
                      noise: float = 0.1, l2: float = 0.0, seed: int = 0) -> ConvexProblem:
  """Features whose second moment A^T A / n has eigenvalues exactly geometric in
  [1/condition_number, 1]; targets A w_true + noise (least squares) or logistic labels."""
  _check_loss(loss)
  if condition_number < 1.0:
    raise ConfigError(f"condition_number={condition_number} must be >= 1")
  if n < d or d < 1:
    raise ConfigError(f"n={n}, d={d}: need n >= d >= 1")
  rng = np.random.default_rng([seed, 2306])
  u, _ = np.linalg.qr(rng.normal(size=(n, d)))
  v, _ = np.linalg.qr(rng.normal(size=(d, d)))
  eig = condition_number ** (-np.arange(d) / max(d - 1, 1))
  x = np.sqrt(n) * (u * np.sqrt(eig)) @ v.T
  w_true = rng.normal(size=d)
  z = x @ w_true
  if loss == "least_squares":
    y = z + noise * rng.normal(size=n)
  else:
    z = 3.0 * z / np.std(z)  # margins of a few units: separable-ish but not separable
    y = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-z)), 1.0, -1.0)
  return ConvexProblem(f"synthetic(kappa={condition_number:g})", loss, x, y, float(l2))


def flat_features(x, *, chunk_rows: int = 4096) -> np.ndarray:
  """The rows of `x` (N, ...) flattened to (N, D) float64, read in row chunks so that a lazy
  split (records.RecordArray) is decoded chunk by chunk, never as a whole float32 copy."""
  n = len(x)
  d = int(np.prod(x.shape[1:], dtype=np.int64))
  out = np.empty((n, d), np.float64)
  for start in range(0, n, chunk_rows):
    rows = np.asarray(x[start:start + chunk_rows])
    out[start:start + len(rows)] = rows.reshape(len(rows), d)
  return out


def split_problem(train: Dataset, loss: str, *, l2: float = 1e-3, positive_from: int = 5,
                  name: str = "digits") -> ConvexProblem:
  """A split's images as a problem: pixels centred with the split mean (constant pixels
  dropped), each row scaled to unit norm, plus a bias feature 1; label +1 for classes >=
  `positive_from`, else -1 (the regression target for least squares, the class for logistic).
  Unit rows give every example the same smoothness."""
  _check_loss(loss)
  x = flat_features(train.x)
  x = x[:, x.std(axis=0) > 0]
  x = x - x.mean(axis=0)
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  y = np.where(np.asarray(train.y) >= positive_from, 1.0, -1.0)
  return ConvexProblem(name, loss, x, y, float(l2))


def digits_problem(loss: str, *, l2: float = 1e-3, split_seed: int = 0) -> ConvexProblem:
  """The embedded digits' train split (robustdata.data.sources `digits`) as `split_problem`:
  label +1 for digits 5-9, -1 for 0-4."""
  _check_loss(loss)
  from robustdata.data.sources import load_digits  # pylint: disable=g-import-not-at-top
  return split_problem(load_digits({"split_seed": split_seed}).train, loss, l2=l2)


# ---- float64 NumPy: objective, gradient, optimum, constants ---------------------------------

def objective64(p: ConvexProblem, w: np.ndarray) -> float:
  """F(w) in float64."""
  z = p.x @ w
  data = 0.5 * (z - p.y) ** 2 if p.loss == "least_squares" else np.logaddexp(0.0, -p.y * z)
  return float(data.mean() + 0.5 * p.l2 * w @ w)


def gradient64(p: ConvexProblem, w: np.ndarray) -> np.ndarray:
  """grad F(w) in float64."""
  z = p.x @ w
  s = z - p.y if p.loss == "least_squares" else -p.y / (1.0 + np.exp(p.y * z))
  return p.x.T @ s / len(p.y) + p.l2 * w


def _hessian64(p: ConvexProblem, w: np.ndarray) -> np.ndarray:
  if p.loss == "least_squares":
    h = np.ones(len(p.y))
  else:
    s = 1.0 / (1.0 + np.exp(-p.x @ w))
    h = s * (1.0 - s)
  return (p.x * h[:, None]).T @ p.x / len(p.y) + p.l2 * np.eye(p.x.shape[1])


def optimum(p: ConvexProblem, *, tol: float = 1e-13, max_iter: int = 100) -> np.ndarray:
  """argmin F in float64: the normal equations (least squares) or damped Newton (logistic)
  until ||grad F|| <= tol."""
  d = p.x.shape[1]
  if p.loss == "least_squares":
    a = p.x.T @ p.x / len(p.y) + p.l2 * np.eye(d)
    w = np.linalg.solve(a, p.x.T @ p.y / len(p.y))
    return w + np.linalg.solve(a, -gradient64(p, w))  # one refinement step
  w = np.zeros(d)
  for _ in range(max_iter):
    g = gradient64(p, w)
    if np.linalg.norm(g) <= tol:
      break
    step = np.linalg.solve(_hessian64(p, w), g)
    t, f0 = 1.0, objective64(p, w)
    while objective64(p, w - t * step) > f0 - 0.25 * t * g @ step and t > 1e-10:
      t *= 0.5
    w = w - t * step
  return w


def constants(p: ConvexProblem, w_star: np.ndarray) -> dict[str, float]:
  """Smoothness of the worst example (L_max, sets the step size and the bound's L), of F
  (L_F), strong convexity mu (global lower bound) and mu_star (at w*), kappa_star = L_F/mu*."""
  sq = np.sum(p.x ** 2, axis=1)
  curv = 1.0 if p.loss == "least_squares" else 0.25
  eig_star = np.linalg.eigvalsh(_hessian64(p, w_star))
  if p.loss == "least_squares":
    mu = float(eig_star[0])
    lf = float(eig_star[-1])
  else:
    mu = p.l2
    lf = float(np.linalg.eigvalsh(0.25 * p.x.T @ p.x / len(p.y))[-1] + p.l2)
  return {"L_max": float(curv * sq.max() + p.l2), "L_F": lf, "mu": mu,
          "mu_star": float(eig_star[0]), "kappa_star": float(eig_star[-1] / eig_star[0])}


def step_sizes(schedule: str, *, eta0: float, epochs: int, steps_per_epoch: int,
               t0: float | None = None) -> np.ndarray:
  """(epochs, steps_per_epoch) step sizes: eta0 (`constant`) or eta0 / (1 + t / t0) at global
  step t (`decreasing`; t0 defaults to one epoch)."""
  if schedule not in SCHEDULES:
    raise ConfigError(f"schedule={schedule!r} is not known; allowed: {list(SCHEDULES)}")
  if eta0 <= 0 or epochs < 1 or steps_per_epoch < 1:
    raise ConfigError(f"eta0={eta0}, epochs={epochs}, steps_per_epoch={steps_per_epoch} "
                      "must all be positive")
  t = np.arange(epochs * steps_per_epoch, dtype=np.float64).reshape(epochs, steps_per_epoch)
  if schedule == "constant":
    return np.full_like(t, eta0)
  return eta0 / (1.0 + t / float(t0 or steps_per_epoch))


# ---- JAX kernels ----------------------------------------------------------------------------

def per_example_grads(x: jax.Array, y: jax.Array, w: jax.Array, *, loss: str,
                      l2: float | jax.Array) -> jax.Array:
  """(n, d) gradients grad f_i(w)."""
  z = jnp.matmul(x, w, precision=_HIGHEST)
  s = z - y if loss == "least_squares" else -y * jax.nn.sigmoid(-y * z)
  return s[:, None] * x + l2 * w


def gradient_norms(x: jax.Array, y: jax.Array, w: jax.Array, *, loss: str,
                   l2: float | jax.Array) -> jax.Array:
  """(n,) ||grad f_i(w)||: the quantity the sorted orderings sort by."""
  return jnp.linalg.norm(per_example_grads(x, y, w, loss=loss, l2=l2), axis=1)


def _batches(order: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """order cut into consecutive batches (K, b), the last padded (index 0) with a 0/1 mask."""
  n = order.shape[0]
  pad = -n % batch_size
  idx = jnp.concatenate([order, jnp.zeros(pad, order.dtype)]).reshape(-1, batch_size)
  mask = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)]).reshape(-1, batch_size)
  return idx, mask


def num_steps(n: int, batch_size: int) -> int:
  """Steps in one epoch of n examples in batches of batch_size (the last may be smaller)."""
  return -(-n // batch_size)


@functools.partial(jax.jit, static_argnames=("loss", "batch_size", "keep_grads"))
def sgd_epoch(x: jax.Array, y: jax.Array, w: jax.Array, order: jax.Array, etas: jax.Array, *,
              loss: str, l2: float | jax.Array, batch_size: int = 1, keep_grads: bool = False
              ) -> tuple[jax.Array, jax.Array | None]:
  """One without-replacement epoch: batches are consecutive blocks of `order`, step k moves by
  etas[k] times the batch-mean gradient at the current point. Returns (w, grads), grads (n, d)
  the gradients each example had when visited (in visit order) if keep_grads, else None."""
  idx, mask = _batches(order, batch_size)
  mask = mask.astype(w.dtype)

  def step(w, inp):
    i, m, eta = inp
    g = per_example_grads(x[i], y[i], w, loss=loss, l2=l2)
    w = w - eta * jnp.sum(m[:, None] * g, axis=0) / jnp.sum(m)
    return w, (g if keep_grads else None)

  w, gs = jax.lax.scan(step, w, (idx, mask, etas.astype(w.dtype)))
  if keep_grads:
    gs = gs.reshape(-1, w.shape[0])[:order.shape[0]]
  return w, gs


def sorted_order(norms: jax.Array, *, ascending: bool) -> jax.Array:
  """Indices by norm, ascending or descending; ties keep the lower index first."""
  return jnp.argsort(norms if ascending else -norms, stable=True).astype(jnp.int32)


def grab_balance(carry: tuple[jax.Array, ...], grads: jax.Array, visits: jax.Array,
                 stale_mean: jax.Array) -> tuple[jax.Array, ...]:
  """GraB's online gradient balancing (Lu et al., NeurIPS'22) over a run of visits: each
  centred gradient c = grads[k] - stale_mean gets the sign that keeps the running sum s small
  (+ if ||s + c|| <= ||s - c||); + examples fill the next order from the front, - examples
  from the back. carry = (s, left, right, next_order), from `grab_start`; returns it updated,
  so an epoch can be balanced whole or one batch at a time."""

  def step(carry, inp):
    s, left, right, nxt = carry
    g, i = inp
    c = g - stale_mean
    plus = jnp.vdot(s, c) <= 0
    nxt = nxt.at[jnp.where(plus, left, right)].set(i)
    s = jnp.where(plus, s + c, s - c)
    return (s, left + plus, right - (~plus), nxt), None

  carry, _ = jax.lax.scan(step, carry, (grads, visits))
  return carry


def grab_start(n: int, stale_mean: jax.Array, dtype: Any = jnp.int32) -> tuple[jax.Array, ...]:
  """The carry of `grab_balance` at the start of an epoch of n examples: s = 0, an empty order
  of `dtype` filled from both ends."""
  return (jnp.zeros_like(stale_mean), jnp.int32(0), jnp.int32(n - 1), jnp.zeros(n, dtype))


def grab_order(grads: jax.Array, order: jax.Array, stale_mean: jax.Array) -> jax.Array:
  """GraB's next order from a whole epoch (`grab_balance` from `grab_start`): grads[k] is the
  gradient of example order[k] when it was visited."""
  init = grab_start(order.shape[0], stale_mean, order.dtype)
  return grab_balance(init, grads, order, stale_mean)[3]


def epoch_bound(grads0: jax.Array, order: jax.Array, etas: jax.Array, w0: jax.Array,
                w_star: jax.Array, *, smoothness: float | jax.Array, batch_size: int = 1
                ) -> jax.Array:
  """The upper bound on ||w_end - w*|| after one epoch in `order` (module docstring), from the
  start-of-epoch per-example gradients grads0 (n, d) and the epoch's step sizes etas (K,)."""
  idx, mask = _batches(order, batch_size)
  mask = mask.astype(grads0.dtype)
  gbar = jnp.sum(grads0[idx] * mask[..., None], axis=1) / jnp.sum(mask, axis=1)[:, None]
  etas = etas.astype(grads0.dtype)
  first = jnp.linalg.norm(w0 - w_star - jnp.sum(etas[:, None] * gbar, axis=0))

  def step(carry, inp):
    drift, total = carry
    eta, norm = inp
    return ((1.0 + eta * smoothness) * drift + eta * norm, total + smoothness * eta * drift), None

  zero = jnp.zeros((), grads0.dtype)
  (_, second), _ = jax.lax.scan(step, (zero, zero), (etas, jnp.linalg.norm(gbar, axis=1)))
  return first + second


def check_ordering(ordering: str) -> None:
  if ordering not in ORDERINGS:
    raise ConfigError(f"ordering={ordering!r} is not known; allowed: {list(ORDERINGS)}")


@functools.partial(jax.jit, static_argnames=("loss", "ordering", "batch_size"))
def train(x: jax.Array, y: jax.Array, w0: jax.Array, etas: jax.Array, key: jax.Array,
          w_star: jax.Array, *, loss: str, l2: float | jax.Array, ordering: str,
          batch_size: int = 1, smoothness: float | jax.Array = 1.0) -> jax.Array:
  """Epochs of without-replacement SGD from w0 (etas: (epochs, steps) step sizes), each epoch's
  order from `ordering`: `random` reshuffling, `fixed` (one permutation reused), `ascending` /
  `descending` start-of-epoch gradient norm, `grab` (first epoch random), `bound` (the sorted
  direction with the smaller epoch_bound; reads w_star and smoothness). Returns the iterates
  at the start and end of every epoch, (epochs + 1, d)."""
  check_ordering(ordering)
  n = x.shape[0]
  fixed = jax.random.permutation(jax.random.fold_in(key, 1 << 20), n).astype(jnp.int32)

  def epoch(carry, inp):
    w, grab_next, stale_mean = carry
    e, eta = inp
    if ordering == "random":
      order = jax.random.permutation(jax.random.fold_in(key, e), n).astype(jnp.int32)
    elif ordering == "fixed":
      order = fixed
    elif ordering in ("ascending", "descending"):
      order = sorted_order(gradient_norms(x, y, w, loss=loss, l2=l2),
                           ascending=ordering == "ascending")
    elif ordering == "grab":
      order = grab_next
    else:  # bound
      g0 = per_example_grads(x, y, w, loss=loss, l2=l2)
      norms = jnp.linalg.norm(g0, axis=1)
      up, down = sorted_order(norms, ascending=True), sorted_order(norms, ascending=False)
      b_up, b_down = (epoch_bound(g0, o, eta, w, w_star, smoothness=smoothness,
                                  batch_size=batch_size) for o in (up, down))
      order = jnp.where(b_up <= b_down, up, down)
    w_new, gs = sgd_epoch(x, y, w, order, eta, loss=loss, l2=l2, batch_size=batch_size,
                          keep_grads=ordering == "grab")
    if ordering == "grab":
      grab_next, stale_mean = grab_order(gs, order, stale_mean), jnp.mean(gs, axis=0)
    return (w_new, grab_next, stale_mean), w_new

  first = jax.random.permutation(jax.random.fold_in(key, 0), n).astype(jnp.int32)
  epochs = jnp.arange(etas.shape[0])
  _, ws = jax.lax.scan(epoch, (w0, first, jnp.zeros_like(w0)), (epochs, etas.astype(w0.dtype)))
  return jnp.concatenate([w0[None], ws])


def as_arrays(p: ConvexProblem, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
  """(x, y) of a problem as JAX arrays of `dtype`."""
  return jnp.asarray(p.x, dtype), jnp.asarray(p.y, dtype)
