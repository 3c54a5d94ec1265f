"""Bounded random noise added to training images at every load (the random component of the
Friendly Noise defence): Bernoulli +-eps, uniform U(-eps, eps) or Gaussian N(0, eps^2).

Pure jax functions, usable inside a jitted train step with a key folded from the step, so the
same step redraws the same noise on resume. Noise is in pixel space ([0, 1] images).
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from robustdata.registry import ConfigError

KINDS = ("none", "bernoulli", "uniform", "gaussian")


def check_kind(kind: str, *, field: str = "config.friendly.noise_kind",
               allowed: Sequence[str] = KINDS) -> None:
  if kind not in allowed:
    raise ConfigError(f"{field}={kind!r} is not known; allowed values: {list(allowed)}")


def random_noise(key: Optional[jax.Array], shape: Sequence[int], *, kind: str = "bernoulli",
                 eps: float, dtype=jnp.float32) -> jax.Array:
  """Noise of `shape`: 'bernoulli' is +eps or -eps per entry with probability 1/2 each,
  'uniform' U(-eps, eps), 'gaussian' N(0, eps^2), 'none' zeros (no key needed)."""
  check_kind(kind)
  shape = tuple(shape)
  if kind == "none":
    return jnp.zeros(shape, dtype)
  eps = jnp.asarray(eps, dtype)
  if kind == "bernoulli":
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), eps, -eps)
  if kind == "uniform":
    return jax.random.uniform(key, shape, dtype, minval=-eps, maxval=eps)
  return eps * jax.random.normal(key, shape, dtype)


def apply_defence_noise(x: jax.Array, friendly: Optional[jax.Array] = None, *,
                        key: Optional[jax.Array] = None, kind: str = "bernoulli",
                        eps: float = 8 / 255) -> jax.Array:
  """clip(x + friendly, 0, 1) + random noise, as the Friendly Noise training transform.

  The sum is deliberately not clipped after the random component (pixels may leave [0, 1] by
  up to eps), matching the reference training pipeline. `friendly=None` skips the first term
  (and its clip); `kind='none'` skips the random one.
  """
  check_kind(kind)
  if friendly is not None:
    x = jnp.clip(x + friendly.astype(x.dtype), 0.0, 1.0)
  if kind != "none":
    if key is None:
      raise ValueError(f"random noise of kind {kind!r} needs a PRNG key")
    x = x + random_noise(key, x.shape, kind=kind, eps=eps, dtype=x.dtype)
  return x
