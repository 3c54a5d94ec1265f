"""Pure per-example losses. Reductions (weights, masks, group weights) happen in objectives
and gradient rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, *,
                  label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example softmax cross-entropy, (B, C) logits and (B,) int labels -> (B,).

  With label smoothing eps the target is (1 - eps) * onehot + eps / C.
  """
  num_classes = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=logp.dtype)
  if label_smoothing:
    onehot = (1.0 - label_smoothing) * onehot + label_smoothing / num_classes
  return -jnp.sum(onehot * logp, axis=-1)

