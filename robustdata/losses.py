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



# Early-learning regularisation (ELR; Liu et al., NeurIPS 2020). The softmax is clipped to
# [ELR_CLIP, 1 - ELR_CLIP] in both the target update and the regulariser, which keeps
# 1 - <t, p> >= ELR_CLIP (targets sum to at most 1).
ELR_CLIP = 1e-4


def elr_probabilities(logits: jnp.ndarray) -> jnp.ndarray:
  """softmax(logits) clipped to [ELR_CLIP, 1 - ELR_CLIP] (no renormalisation), (B, C)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.clip(probs, ELR_CLIP, 1.0 - ELR_CLIP)


def elr_target_update(targets: jnp.ndarray, logits: jnp.ndarray, *, beta: float) -> jnp.ndarray:
  """The temporal ensemble t <- beta t + (1 - beta) p / sum(p), p = the clipped softmax of
  `logits` (no gradient flows into the targets), (B, C) -> (B, C)."""
  probs = jax.lax.stop_gradient(elr_probabilities(logits))
  return beta * targets + (1.0 - beta) * probs / jnp.sum(probs, axis=-1, keepdims=True)


def elr_regularizer(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Per-example log(1 - <t, p>), p the clipped softmax of `logits` and t the (already
  updated) targets, treated as constants. Minimising it pulls the prediction towards the
  targets, so the model keeps what it learnt early on."""
  agreement = jnp.sum(jax.lax.stop_gradient(targets) * elr_probabilities(logits), axis=-1)
  return jnp.log(1.0 - agreement)


def elr_loss(logits: jnp.ndarray, labels: jnp.ndarray, targets: jnp.ndarray, *, lam: float,
             label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example ELR loss CE(logits, y) + lam * log(1 - <t, p>) (`elr_regularizer`)."""
  ce = cross_entropy(logits, labels, label_smoothing=label_smoothing)
  return ce + lam * elr_regularizer(logits, targets)


# mixup (Zhang et al., ICLR 2018): one lambda ~ Beta(alpha, alpha) and one permutation per batch.


def mixup_inputs(x: jnp.ndarray, partner: jnp.ndarray, lam: jnp.ndarray) -> jnp.ndarray:
  """lam * x + (1 - lam) * x[partner] (partner: a permutation of the batch rows)."""
  lam = jnp.asarray(lam, x.dtype)
  return lam * x + (1.0 - lam) * x[partner]


def mixup_loss(logits: jnp.ndarray, labels: jnp.ndarray, partner: jnp.ndarray, lam: jnp.ndarray,
               *, label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example lam * CE(logits, y) + (1 - lam) * CE(logits, y[partner]): the cross-entropy
  against the mixed one-hot target lam e_y + (1 - lam) e_y[partner]."""
  own = cross_entropy(logits, labels, label_smoothing=label_smoothing)
  other = cross_entropy(logits, labels[partner], label_smoothing=label_smoothing)
  return lam * own + (1.0 - lam) * other
