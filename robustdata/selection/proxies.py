"""Gradient proxies for coreset selection (CRAIG argument, spec §0): cheap stand-ins for
per-example gradients whose differences bound the full gradient differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def last_layer_proxy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """softmax(logits) - onehot(labels), shape (n, C): the gradient of CE w.r.t. the logits."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return probs - jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)


def linear_layer_proxy(logits: jax.Array, labels: jax.Array, features: jax.Array) -> jax.Array:
  """(softmax - onehot) ⊗ features flattened, shape (n, C * F): the exact per-example gradient
  of CE w.r.t. the last linear layer's kernel (DEA's `--use_linear`)."""
  g = last_layer_proxy(logits, labels)
  outer = g[:, :, None] * features.astype(g.dtype)[:, None, :]
  return outer.reshape(g.shape[0], -1)
