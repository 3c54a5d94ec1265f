"""Augmentations against NumPy references."""

import jax
import numpy as np
import pytest

from robustdata.data import augment
from robustdata.registry import ConfigError


def test_random_crop_matches_numpy_slices():
  x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)
  key = jax.random.PRNGKey(3)
  out = np.asarray(augment.random_crop(key, x, padding=2))
  offsets = np.asarray(jax.random.randint(key, (6, 2), 0, 5))
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i, (dy, dx) in enumerate(offsets):
    np.testing.assert_array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])


def test_random_flip_flips_exactly_the_drawn_rows():
  x = np.random.default_rng(0).normal(size=(64, 4, 5, 1)).astype(np.float32)
  key = jax.random.PRNGKey(1)
  out = np.asarray(augment.random_flip(key, x))
  flip = np.asarray(jax.random.bernoulli(key, 0.5, (64,)))
  assert 10 < flip.sum() < 54
  np.testing.assert_array_equal(out[flip], x[flip][:, :, ::-1])
  np.testing.assert_array_equal(out[~flip], x[~flip])


def test_unknown_augmentation():
  with pytest.raises(ConfigError, match="config.data.augment contains 'mixup'; allowed values"):
    augment.validate(["crop", "mixup"])
