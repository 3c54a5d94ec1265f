"""Gaussian noise for DP-SGD, drawn once for the global batch.

The noise depends only on the key and the parameter shapes, never on the batch, so under
`jax.jit` with a sharded batch and replicated parameters every device computes the same draw:
one draw for the global batch, not one per device (tested on 8 fake CPU devices).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from robustdata.privacy import clipping

PyTree = Any


def gaussian_noise(key: jax.Array, like: PyTree, *, stddev: float,
                   mask: Optional[dict[tuple, jnp.ndarray]] = None) -> PyTree:
  """N(0, stddev^2) noise shaped like `like`, zero on pruned coordinates (`mask` 0)."""
  flat = clipping.flatten(like)
  keys = jax.random.split(key, max(len(flat), 1))
  out = {}
  for k, (path, leaf) in zip(keys, sorted(flat.items())):
    z = stddev * jax.random.normal(k, leaf.shape, leaf.dtype)
    if mask is not None and path in mask:
      z = z * mask[path]
    out[path] = z
  return clipping.unflatten(out)


def privatize(summed: PyTree, key: jax.Array, *, clip_norm: float, noise_multiplier: float,
              expected_batch_size: float, add_noise: bool,
              mask: Optional[dict[tuple, jnp.ndarray]] = None) -> PyTree:
  """(sum of clipped gradients + N(0, (sigma C)^2 I)) / expected_batch_size, masked.

  Normalising by the expected (not the realised) batch size keeps Poisson sampling private:
  the realised size depends on the data.
  """
  if add_noise and noise_multiplier > 0:
    noise = gaussian_noise(key, summed, stddev=noise_multiplier * clip_norm, mask=mask)
    summed = jax.tree_util.tree_map(jnp.add, summed, noise)
  flat = clipping.flatten(summed)
  out = {}
  for path, g in flat.items():
    g = g / expected_batch_size
    if mask is not None and path in mask:
      g = g * mask[path]
    out[path] = g
  return clipping.unflatten(out)
