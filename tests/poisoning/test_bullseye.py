"""Bullseye Polytope: the objective against NumPy (features written out by hand), and crafting
lowers it within the eps ball and [0, 1]."""

import numpy as np

from robustdata.poisoning import bullseye
from tests.poisoning import tiny_models as tm


def _np_features(variables, x):
  p = variables["params"]["hidden"]
  w, b = np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)
  return np.tanh(x.reshape(len(x), -1).astype(np.float64) @ w + b)


def _np_loss(poison_feats, target_feats):
  t = np.atleast_2d(target_feats)
  diff = poison_feats.mean(0)[None] - t
  return np.mean(np.linalg.norm(diff, axis=1) / np.linalg.norm(t, axis=1))


def test_loss_matches_numpy():
  rng = np.random.default_rng(0)
  pf = rng.standard_normal((5, 7)).astype(np.float32)
  for tf in (rng.standard_normal(7), rng.standard_normal((3, 7))):
    tf = tf.astype(np.float32)
    np.testing.assert_allclose(float(bullseye.bullseye_loss(pf, tf)), _np_loss(pf, tf),
                               rtol=1e-5)
  # The poisons' mean exactly on the target gives 0.
  t = rng.standard_normal(7)
  pf = np.stack([t + 1, t - 1]).astype(np.float32)
  assert abs(float(bullseye.bullseye_loss(pf, t.astype(np.float32)))) < 1e-6


def test_objective_averages_substitutes():
  subs = []
  for seed in (0, 1):
    _, v, _, features_fn = tm.make(seed, hidden=8)
    subs.append((v, features_fn))
  x_b, x_t = tm.images(1, 4), tm.images(2, 1)
  targets = [f(v, x_t) for v, f in subs]
  got = float(bullseye.bullseye_objective(subs, x_b, targets))
  want = np.mean([_np_loss(_np_features(v, x_b), _np_features(v, x_t)) for v, _ in subs])
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_crafting_lowers_the_objective_within_bounds():
  subs = []
  for seed in (3, 4):
    _, v, _, features_fn = tm.make(seed, hidden=8)
    subs.append((v, features_fn))
  x_b, x_t = tm.images(5, 4), tm.images(6, 1)
  x_b[0, 0, 0] = 1.0  # pixels at the box edges
  x_b[1, 0, 0] = 0.0
  eps = 0.1
  delta, losses = bullseye.craft_bullseye(subs, x_b, x_t[0], eps=eps, lr=0.01, iterations=80)
  assert delta.shape == x_b.shape and losses.shape == (80,)
  assert np.all(np.abs(delta) <= eps + 1e-6)
  poisons = x_b + delta
  assert np.all(poisons >= -1e-6) and np.all(poisons <= 1 + 1e-6)
  targets = [f(v, x_t) for v, f in subs]
  start = float(bullseye.bullseye_objective(subs, x_b, targets))
  end = float(bullseye.bullseye_objective(subs, np.clip(poisons, 0, 1), targets))
  np.testing.assert_allclose(losses[0], start, rtol=1e-5)
  assert end < 0.7 * start, (start, end)
