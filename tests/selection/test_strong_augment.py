"""RandAugment-style strong augmentation: ranges, determinism, and ops against NumPy."""

import jax
import numpy as np
import pytest

from robustdata.data import strong_augment


def _images(n=6, h=8, w=8, c=3, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, h, w, c)).astype(np.float32)


def test_rand_augment_shape_range_and_determinism():
  x = _images()
  a = strong_augment.rand_augment(jax.random.PRNGKey(1), x, num_ops=2, magnitude=0.7)
  b = strong_augment.rand_augment(jax.random.PRNGKey(1), x, num_ops=2, magnitude=0.7)
  c = strong_augment.rand_augment(jax.random.PRNGKey(2), x, num_ops=2, magnitude=0.7)
  assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y",
                                  "brightness", "contrast", "sharpness"])
def test_magnitude_zero_is_identity(name):
  x = _images()
  out = strong_augment.apply_op(name, x, magnitude=0.0)
  np.testing.assert_allclose(np.asarray(out), x, atol=1e-5)


def test_translate_matches_shift_with_zero_fill():
  x = _images(h=10, w=10)
  out = np.asarray(strong_augment.apply_op("translate_x", x, magnitude=2.0 / 3.0, sign=1.0))
  ref = np.zeros_like(x)
  ref[:, :, :-2] = x[:, :, 2:]     # 2/3 * 0.3 * 10 = 2 px: output(p) = input(p + 2)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_colour_ops_against_numpy():
  x = _images()
  sol = np.asarray(strong_augment.apply_op("solarize", x, magnitude=0.4))
  np.testing.assert_allclose(sol, np.where(x >= 0.6, 1 - x, x), atol=1e-6)
  bright = np.asarray(strong_augment.apply_op("brightness", x, magnitude=0.5, sign=-1.0))
  np.testing.assert_allclose(bright, np.clip(x * (1 - 0.45), 0, 1), atol=1e-6)
  cut = np.asarray(strong_augment.apply_op("cutout", x, magnitude=1.0))
  assert np.all((cut == x) | (cut == 0.0)) and np.any(cut == 0.0)
