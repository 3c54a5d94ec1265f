"""Bounded random noise of the Friendly Noise defence against exact values and sampling bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.data import noise
from robustdata.registry import ConfigError

EPS = 8 / 255
N = 200_000


def test_bernoulli_is_exactly_plus_minus_eps_with_half_probability():
  out = np.asarray(noise.random_noise(jax.random.PRNGKey(0), (N,), kind="bernoulli", eps=EPS))
  e = np.float32(EPS)
  assert set(np.unique(out)) == {-e, e}
  # Binomial(N, 1/2): the frequency of +eps is within 5 standard deviations of 1/2.
  assert abs(np.mean(out > 0) - 0.5) < 5 * np.sqrt(0.25 / N)
  # Entries are independent: neighbouring signs agree half of the time.
  assert abs(np.mean(out[1:] == out[:-1]) - 0.5) < 5 * np.sqrt(0.25 / N)


def test_uniform_within_bounds_with_uniform_moments():
  out = np.asarray(noise.random_noise(jax.random.PRNGKey(1), (N,), kind="uniform", eps=EPS),
                   np.float64)
  assert out.min() >= -np.float32(EPS) and out.max() <= np.float32(EPS)
  # U(-e, e): mean 0, std e/sqrt(3); fraction below e/2 is 3/4.
  assert abs(out.mean()) < 5 * EPS / np.sqrt(3 * N)
  assert abs(out.std() / (EPS / np.sqrt(3)) - 1) < 0.01
  assert abs(np.mean(out < EPS / 2) - 0.75) < 5 * np.sqrt(0.75 * 0.25 / N)


def test_gaussian_std_is_eps():
  out = np.asarray(noise.random_noise(jax.random.PRNGKey(2), (N,), kind="gaussian", eps=EPS),
                   np.float64)
  # The sample std of N normals has relative standard error ~ 1/sqrt(2N).
  assert abs(out.std() / EPS - 1) < 5 / np.sqrt(2 * N)
  assert abs(out.mean()) < 5 * EPS / np.sqrt(N)


def test_none_is_zero_and_keys_matter():
  assert not np.any(np.asarray(noise.random_noise(None, (3, 4), kind="none", eps=EPS)))
  a = noise.random_noise(jax.random.PRNGKey(3), (64,), kind="uniform", eps=EPS)
  b = noise.random_noise(jax.random.PRNGKey(3), (64,), kind="uniform", eps=EPS)
  c = noise.random_noise(jax.random.PRNGKey(4), (64,), kind="uniform", eps=EPS)
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))


def test_apply_clips_before_the_random_component_only():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, size=(16, 4, 4, 3)).astype(np.float32)
  x[0] = 1.0  # friendly noise pushes these above 1: clipped, then the random noise leaves [0, 1]
  x[1] = 0.0
  friendly = rng.uniform(-16 / 255, 16 / 255, size=x.shape).astype(np.float32)
  friendly[0], friendly[1] = 16 / 255, -16 / 255
  key = jax.random.PRNGKey(5)
  step_fn = jax.jit(lambda x, f, step: noise.apply_defence_noise(
      x, f, key=jax.random.fold_in(key, step), kind="bernoulli", eps=EPS))
  out = np.asarray(step_fn(x, friendly, 7), np.float64)
  clipped = np.clip(x.astype(np.float64) + friendly, 0, 1)
  np.testing.assert_allclose(np.abs(out - clipped), EPS, rtol=1e-5)
  assert out.max() > 1.0 and out.min() < 0.0      # not clipped after the random noise
  np.testing.assert_allclose(np.abs(out[0] - 1.0), EPS, rtol=1e-5)

  # Each component switches off.
  only_friendly = np.asarray(noise.apply_defence_noise(x, friendly, kind="none"))
  np.testing.assert_allclose(only_friendly, clipped, atol=1e-7)
  only_random = np.asarray(noise.apply_defence_noise(x, None, key=key, kind="uniform", eps=EPS))
  assert np.all(np.abs(only_random - x) <= np.float32(EPS) + 1e-7)
  assert np.abs(only_random - x).max() > EPS / 2
  np.testing.assert_array_equal(noise.apply_defence_noise(x, None, kind="none"), x)


def test_unknown_kind_and_missing_key():
  with pytest.raises(ConfigError, match=r"config.friendly.noise_kind='salt'.*allowed values"):
    noise.random_noise(jax.random.PRNGKey(0), (2,), kind="salt", eps=EPS)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    noise.apply_defence_noise(jnp.zeros((2, 2)), kind="gaussian")
