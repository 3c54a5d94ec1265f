"""Gaussian noise: std sigma*C/B, added once, with a seeded statistical test."""

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.privacy import noise, rules
from tests.privacy.privacy_models import MLP, erm_coef, make_problem


def test_noise_std_and_mean():
  n = 200_000
  like = {"a": jnp.zeros((n // 2,)), "b": {"c": jnp.zeros((n // 4, 2))}}
  out = noise.privatize(like, jax.random.PRNGKey(0), clip_norm=2.0, noise_multiplier=1.5,
                        expected_batch_size=4.0, add_noise=True)
  z = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(out)])
  std = 1.5 * 2.0 / 4.0
  # The sample std has standard error std / sqrt(2n), the mean std / sqrt(n): allow 5 of them.
  assert abs(z.std() - std) < 5 * std / np.sqrt(2 * n)
  assert abs(z.mean()) < 5 * std / np.sqrt(n)
  # Different leaves get independent draws.
  assert abs(np.corrcoef(np.ravel(out["a"])[:1000], np.ravel(out["b"]["c"])[:1000])[0, 1]) < 0.2


def test_dp_sgd_is_clip_only_plus_one_noise_draw():
  loss_fn, params, batch = make_problem(MLP(), batch_size=4, shape=(3, 2))
  run = lambda mode: jax.jit(lambda p: rules.make_dp_rule(
      mode=mode, clip_norm=0.5, noise_multiplier=2.0, expected_batch_size=3)(
          loss_fn, p, {}, batch, jax.random.PRNGKey(7), erm_coef))(params)
  clipped, _, _ = run("clip_only")
  noisy, _, aux = run("dp_sgd")
  diff = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree_util.tree_leaves(noisy),
                                                         jax.tree_util.tree_leaves(clipped))])
  std = 2.0 * 0.5 / 3.0
  np.testing.assert_allclose(float(aux["noise_std"]), std, rtol=1e-6)
  assert abs(diff.std() - std) < 5 * std / np.sqrt(2 * diff.size)
