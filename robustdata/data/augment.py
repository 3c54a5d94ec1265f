"""Jit-able image augmentations on NHWC batches, one PRNG key per batch.

Each op draws per-example randomness from the key, so a batch is augmented in one compiled
call, and the same key gives the same augmentation (needed for bitwise resume).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from robustdata.registry import ConfigError

AUGMENTATIONS = ("crop", "flip")


def random_crop(key: jax.Array, images: jnp.ndarray, *, padding: int) -> jnp.ndarray:
  """Zero-pads each image by `padding` and crops back to its size at a random offset."""
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

  def crop_one(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

  return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
  """Flips each image left-right with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def apply_augmentations(key: jax.Array, images: jnp.ndarray, names: Sequence[str], *,
                        crop_padding: int = 4) -> jnp.ndarray:
  """Applies the named ops in order ('crop', 'flip'); an empty list is the identity."""
  keys = jax.random.split(key, max(len(names), 1))
  for k, name in zip(keys, names):
    if name == "crop":
      images = random_crop(k, images, padding=crop_padding)
    elif name == "flip":
      images = random_flip(k, images)
    else:
      raise ConfigError(
          f"config.data.augment contains {name!r}; allowed values: {list(AUGMENTATIONS)}")
  return images


def validate(names: Sequence[str]) -> None:
  for name in names:
    if name not in AUGMENTATIONS:
      raise ConfigError(
          f"config.data.augment contains {name!r}; allowed values: {list(AUGMENTATIONS)}")
