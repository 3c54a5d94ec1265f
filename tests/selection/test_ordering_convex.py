"""Convex ordering testbed (spec §7) against float64 NumPy loops and exhaustive enumeration."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.registry import ConfigError
from robustdata.selection import ordering_convex as oc


def _grads64(p, w):
  """Per-example gradients by a plain float64 loop."""
  out = []
  for a, t in zip(p.x, p.y):
    z = float(a @ w)
    s = z - t if p.loss == "least_squares" else -t / (1.0 + np.exp(t * z))
    out.append(s * a + p.l2 * w)
  return np.array(out)


def _sgd64(p, w, order, etas, batch_size):
  """A brute-force float64 epoch: consecutive batches of `order`, batch-mean gradient steps."""
  w = np.array(w, np.float64)
  for k, start in enumerate(range(0, len(order), batch_size)):
    idx = order[start:start + batch_size]
    w = w - etas[k] * _grads64(p, w)[idx].mean(axis=0)
  return w


@pytest.mark.parametrize("loss", oc.LOSSES)
def test_gradient_norms_match_numpy(loss):
  """The norms the sorted orderings use equal a direct float64 computation."""
  p = oc.synthetic_problem(loss, n=40, d=6, condition_number=30.0, l2=0.01, seed=3)
  w = np.random.default_rng(0).normal(size=6)
  with jax.enable_x64(True):
    x, y = oc.as_arrays(p, jnp.float64)
    got = np.asarray(oc.gradient_norms(x, y, jnp.asarray(w), loss=loss, l2=p.l2))
  np.testing.assert_allclose(got, np.linalg.norm(_grads64(p, w), axis=1), rtol=1e-12)


@pytest.mark.parametrize("loss", oc.LOSSES)
@pytest.mark.parametrize("source", ["synthetic", "digits"])
def test_optimum_has_zero_gradient(loss, source):
  p = (oc.synthetic_problem(loss, l2=0.0 if loss == "least_squares" else 1e-3) if
       source == "synthetic" else oc.digits_problem(loss))
  w = oc.optimum(p)
  assert np.linalg.norm(oc.gradient64(p, w)) < 1e-10
  c = oc.constants(p, w)
  assert 0 < c["mu"] <= c["mu_star"] <= c["L_F"] <= c["L_max"]
  if source == "synthetic" and loss == "least_squares":  # the condition number is set exactly
    assert c["kappa_star"] == pytest.approx(100.0, rel=1e-9)


@pytest.mark.parametrize("loss", oc.LOSSES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_sgd_epoch_matches_numpy_loop(loss, batch_size):
  """A given permutation (ragged last batch for b=3, n=10) and decreasing steps."""
  p = oc.synthetic_problem(loss, n=10, d=4, condition_number=5.0, l2=0.05, seed=1)
  rng = np.random.default_rng(2)
  order, w0 = rng.permutation(10), rng.normal(size=4)
  etas = oc.step_sizes("decreasing", eta0=0.1, epochs=1,
                       steps_per_epoch=oc.num_steps(10, batch_size))[0]
  with jax.enable_x64(True):
    x, y = oc.as_arrays(p, jnp.float64)
    w, grads = oc.sgd_epoch(x, y, jnp.asarray(w0), jnp.asarray(order), jnp.asarray(etas),
                            loss=loss, l2=p.l2, batch_size=batch_size, keep_grads=True)
  np.testing.assert_allclose(np.asarray(w), _sgd64(p, w0, order, etas, batch_size), rtol=1e-12)
  # grads[k] is example order[k]'s gradient at the point where its batch was taken.
  w_batch = _sgd64(p, w0, order[:batch_size * 2], etas, batch_size)
  k = 2 * batch_size
  np.testing.assert_allclose(np.asarray(grads)[k], _grads64(p, w_batch)[order[k]], rtol=1e-10)


def test_grab_order_matches_loop():
  rng = np.random.default_rng(4)
  grads, order, mean = rng.normal(size=(9, 3)), rng.permutation(9), rng.normal(size=3) * 0.1
  s, left, right, want = np.zeros(3), 0, 8, np.zeros(9, int)
  for g, i in zip(grads, order):
    c = g - mean
    if np.linalg.norm(s + c) <= np.linalg.norm(s - c):
      want[left], left, s = i, left + 1, s + c
    else:
      want[right], right, s = i, right - 1, s - c
  with jax.enable_x64(True):
    got = oc.grab_order(jnp.asarray(grads), jnp.asarray(order), jnp.asarray(mean))
  np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("loss", oc.LOSSES)
def test_bound_selects_among_best_of_all_orderings(loss):
  """n = 7: all 5,040 one-epoch orderings. The bound is a valid upper bound on the distance
  after the epoch for every ordering; the ordering it selects (the sorted direction with the
  smaller bound) is among the best by the bound's value: the exact minimum with constant steps
  (ascending norms, by the rearrangement argument) and, with decreasing steps, at most 1% of
  all orderings have a strictly smaller bound."""
  perms = np.array(list(itertools.permutations(range(7))), np.int32)
  for seed, scale in [(0, 0.3), (1, 3.0), (4, 1.0)]:
    p = oc.synthetic_problem(loss, n=7, d=3, condition_number=10.0, noise=0.5, l2=0.01,
                             seed=seed)
    w_star = oc.optimum(p)
    lip = oc.constants(p, w_star)["L_max"]
    w0 = w_star + scale * np.random.default_rng(seed).normal(size=3)
    with jax.enable_x64(True):
      x, y = oc.as_arrays(p, jnp.float64)
      g0 = oc.per_example_grads(x, y, jnp.asarray(w0), loss=loss, l2=p.l2)
      norms = np.linalg.norm(_grads64(p, w0), axis=1)
      for schedule in oc.SCHEDULES:
        eta = jnp.asarray(oc.step_sizes(schedule, eta0=0.5 / lip, epochs=1, steps_per_epoch=7)[0])
        bound = jax.vmap(lambda o: oc.epoch_bound(g0, o, eta, jnp.asarray(w0),
                                                  jnp.asarray(w_star), smoothness=lip))
        run = jax.vmap(lambda o: oc.sgd_epoch(x, y, jnp.asarray(w0), o, eta, loss=loss,
                                              l2=p.l2)[0])
        values = np.asarray(bound(jnp.asarray(perms)))
        dist = np.linalg.norm(np.asarray(run(jnp.asarray(perms))) - w_star, axis=1)
        assert np.all(dist <= values * (1 + 1e-12))
        chosen = min(values[np.flatnonzero((perms == np.argsort(s * norms, kind="stable"))
                                           .all(axis=1))[0]] for s in (1.0, -1.0))
        if schedule == "constant":
          assert chosen <= values.min() * (1 + 1e-12)
        assert np.mean(values < chosen * (1 - 1e-12)) <= 0.01


def test_train_orders_and_determinism():
  """`fixed` repeats one permutation; `ascending`'s first epoch is an epoch in NumPy's argsort
  order; the same key gives the same trajectory."""
  p = oc.synthetic_problem("least_squares", n=12, d=3, condition_number=4.0, l2=0.0, seed=5)
  w0 = np.random.default_rng(1).normal(size=3)
  etas = oc.step_sizes("constant", eta0=0.05, epochs=3, steps_per_epoch=12)
  with jax.enable_x64(True):
    x, y = oc.as_arrays(p, jnp.float64)
    args = (x, y, jnp.asarray(w0), jnp.asarray(etas), jax.random.key(3), jnp.zeros(3))
    ws = np.asarray(oc.train(*args, loss=p.loss, l2=p.l2, ordering="ascending"))
    order = np.argsort(np.linalg.norm(_grads64(p, w0), axis=1), kind="stable")
    np.testing.assert_allclose(ws[1], _sgd64(p, w0, order, etas[0], 1), rtol=1e-12)
    for ordering in oc.ORDERINGS:
      a = oc.train(*args, loss=p.loss, l2=p.l2, ordering=ordering, smoothness=2.0)
      b = oc.train(*args, loss=p.loss, l2=p.l2, ordering=ordering, smoothness=2.0)
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
      assert a.shape == (4, 3) and np.all(np.isfinite(np.asarray(a)))
    fixed = np.asarray(oc.train(*args, loss=p.loss, l2=p.l2, ordering="fixed"))
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(3), 1 << 20), 12))
    w = w0
    for e in range(3):
      w = _sgd64(p, w, perm, etas[e], 1)
      np.testing.assert_allclose(fixed[e + 1], w, rtol=1e-12)


def test_bad_input_raises_config_error():
  with pytest.raises(ConfigError, match="loss='hinge'"):
    oc.synthetic_problem("hinge")
  with pytest.raises(ConfigError, match="condition_number=0.5"):
    oc.synthetic_problem("logistic", condition_number=0.5)
  with pytest.raises(ConfigError, match="schedule='cosine'"):
    oc.step_sizes("cosine", eta0=0.1, epochs=1, steps_per_epoch=1)
  with pytest.raises(ConfigError, match="ordering='sorted'"):
    oc.check_ordering("sorted")
