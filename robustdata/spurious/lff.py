"""Learning from Failure (Nam et al., NeurIPS 2020; SpuCo's end-to-end LfF): a biased model
trained with generalised cross-entropy, which amplifies its reliance on the easy (spurious)
feature, and a debiased model trained with cross-entropy weighted by the relative difficulty
W(x) = CE_b(x) / (CE_b(x) + CE_d(x)) of each example for the two models.

Kernels are pure JAX: `gce_loss` (per example), `ema_update` (the per-example loss EMAs of each
model, a table over the train split) and `relative_difficulty` (W from the EMAs, each normalised
by its class's maximum EMA as the paper's code does). `objectives.LearningFromFailure` plugs
them into the training step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-8  # keeps W defined where both normalised EMAs are 0


def gce_loss(logits: jnp.ndarray, labels: jnp.ndarray, *, q: float) -> jnp.ndarray:
  """Per-example generalised cross-entropy (Zhang & Sabuncu '18), (1 - p_y^q) / q with p the
  softmax of `logits`; its gradient in the logits is p_y^q (p - e_y), the cross-entropy
  gradient scaled by p_y^q, which favours the examples the model already fits."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  logp_y = jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  return (1.0 - jnp.exp(q * logp_y)) / q


def ema_update(table: jnp.ndarray, seen: jnp.ndarray, index: jnp.ndarray, losses: jnp.ndarray,
               mask: jnp.ndarray, *, alpha: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(table, seen) after one batch: table[i] <- alpha table[i] + (1 - alpha) loss_i for rows
  seen before, table[i] <- loss_i on the first visit; padding rows (mask 0) write nothing."""
  old = table[index]
  first = seen[index] <= 0
  new = jnp.where(first, losses, alpha * old + (1.0 - alpha) * losses)
  where = jnp.where(mask > 0, index, table.shape[0])  # out of bounds: dropped
  table = table.at[where].set(new.astype(table.dtype), mode="drop")
  seen = seen.at[where].set(1.0, mode="drop")
  return table, seen


def class_max(table: jnp.ndarray, train_labels: jnp.ndarray, *, num_classes: int
              ) -> jnp.ndarray:
  """The maximum of `table` over the train rows of each class, (num_classes,)."""
  onehot = jax.nn.one_hot(train_labels, num_classes, dtype=bool)
  return jnp.max(jnp.where(onehot, table[:, None], -jnp.inf), axis=0)


def relative_difficulty(ema_b: jnp.ndarray, ema_d: jnp.ndarray, index: jnp.ndarray,
                        labels: jnp.ndarray, train_labels: jnp.ndarray, *, num_classes: int
                        ) -> jnp.ndarray:
  """W(x) = b / (b + d + EPS) for the batch rows `index` (labels `labels`), where b and d are
  the biased and debiased models' loss EMAs divided by the maximum EMA of the row's class
  over the train split (`train_labels`)."""
  max_b = class_max(ema_b, train_labels, num_classes=num_classes)[labels]
  max_d = class_max(ema_d, train_labels, num_classes=num_classes)[labels]
  b = ema_b[index] / jnp.maximum(max_b, EPS)
  d = ema_d[index] / jnp.maximum(max_d, EPS)
  return b / (b + d + EPS)
