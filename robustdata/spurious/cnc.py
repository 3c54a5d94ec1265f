"""Correct-n-Contrast (Zhang et al., ICML 2022; SpuCo's CorrectNContrastTrain): the spurious
attribute of each train example is inferred (an ERM model's prediction), and a fresh model is
trained on (1 - lam) CE + lam L_con, where L_con pulls together the penultimate representations
of same-class examples with different attributes and pushes apart different-class examples
with the same attribute.

For an anchor i with positives P_i (same class, different attribute) and negatives N_i
(different class, same attribute) in the batch, z the L2-normalised features and tau the
temperature (the paper's eq. 2, the positives in the denominator as in the authors' code):

  L_i = -(1/|P_i|) sum_{p in P_i} log( exp(z_i.z_p / tau) /
                                        sum_{j in P_i + N_i} exp(z_i.z_j / tau) )

and L_con is the mean of L_i over the anchors, the examples with at least one positive and one
negative in the batch. Device kernels (pure JAX): `contrastive_masks`, `anchor_losses`,
`contrastive_loss`. Host kernels (NumPy) for the data policy: `group_attribute_table` (the
attribute a (class, attribute) group stands for), `contrastive_pools` and `plan_batches` (the
paper's batches: anchors of one class with its majority attribute, positives, negatives).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.registry import ConfigError

_NORM_EPS = 1e-12  # squared norm floor: an all-zero feature vector normalises to zero
_MASKED = -1e30    # the logit of a pair outside P_i + N_i (exp underflows to 0)


# --- Device kernels. -----------------------------------------------------------------------------

def contrastive_masks(labels: jnp.ndarray, attribute: jnp.ndarray, mask: jnp.ndarray
                      ) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(positives, negatives), (B, B) bool: positives[i, j] when j has i's class and another
  attribute, negatives[i, j] when j has another class and i's attribute; padding rows
  (mask 0) are neither anchors nor partners. The diagonal is never set."""
  real = mask > 0
  valid = real[:, None] & real[None, :]
  same_class = labels[:, None] == labels[None, :]
  same_attribute = attribute[:, None] == attribute[None, :]
  return same_class & ~same_attribute & valid, ~same_class & same_attribute & valid


def anchor_losses(features: jnp.ndarray, positives: jnp.ndarray, negatives: jnp.ndarray, *,
                  temperature: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(L[B], is_anchor[B]): each anchor's loss L_i (module docstring) on the L2-normalised
  `features` (B, D), 0 for rows that are not anchors (no positive or no negative)."""
  f = features.astype(jnp.float32)
  z = f * jax.lax.rsqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), _NORM_EPS))
  logits = (z @ z.T) / temperature
  partners = positives | negatives
  is_anchor = jnp.any(positives, axis=1) & jnp.any(negatives, axis=1)
  log_denominator = jax.nn.logsumexp(jnp.where(partners, logits, _MASKED), axis=1)
  num_positives = jnp.maximum(jnp.sum(positives, axis=1), 1)
  mean_positive = jnp.sum(jnp.where(positives, logits, 0.0), axis=1) / num_positives
  return jnp.where(is_anchor, log_denominator - mean_positive, 0.0), is_anchor


def contrastive_loss(features: jnp.ndarray, labels: jnp.ndarray, attribute: jnp.ndarray,
                     mask: jnp.ndarray, *, temperature: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(L_con, number of anchors): the mean anchor loss over the batch (0 without anchors)."""
  positives, negatives = contrastive_masks(labels, attribute, mask)
  losses, is_anchor = anchor_losses(features, positives, negatives, temperature=temperature)
  count = jnp.sum(is_anchor)
  return jnp.sum(losses) / jnp.maximum(count, 1), count


# --- Host kernels. -------------------------------------------------------------------------------

def group_attribute_table(groups: np.ndarray, attribute: np.ndarray, *, num_groups: int,
                          field: str) -> np.ndarray:
  """(num_groups,) int32: the attribute every member of group g has (-1 for an empty group);
  a ConfigError naming `field` if a group mixes attribute values (then the groups are not
  (class, attribute) groups and a batch's group ids cannot carry the attribute)."""
  groups = np.asarray(groups, np.int64)
  attribute = np.asarray(attribute, np.int64)
  table = np.full(num_groups, -1, np.int64)
  for g in range(num_groups):
    values = np.unique(attribute[groups == g])
    if len(values) > 1:
      raise ConfigError(f"{field}: group {g} holds examples of spurious attributes "
                        f"{values.tolist()}; Correct-n-Contrast needs groups that fix the "
                        "attribute ((class, attribute) groups)")
    if len(values):
      table[g] = values[0]
  return table.astype(np.int32)


def contrastive_pools(labels: np.ndarray, attribute: np.ndarray, *, num_classes: int
                      ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Per class c, (anchors, positives, negatives) index arrays: anchors are the class-c examples
  with the class's majority attribute m_c (for ERM predictions: the examples ERM classifies
  correctly), positives the class-c examples with another attribute, negatives the examples of
  other classes with attribute m_c. A class without examples gets three empty arrays."""
  labels = np.asarray(labels, np.int64)
  attribute = np.asarray(attribute, np.int64)
  pools = []
  for c in range(num_classes):
    members = labels == c
    if not members.any():
      empty = np.zeros(0, np.int64)
      pools.append((empty, empty, empty))
      continue
    values, counts = np.unique(attribute[members], return_counts=True)
    majority = values[np.argmax(counts)]  # ties: the smallest attribute value
    pools.append((np.flatnonzero(members & (attribute == majority)),
                  np.flatnonzero(members & (attribute != majority)),
                  np.flatnonzero(~members & (attribute == majority))))
  return pools


def usable_classes(pools) -> list[int]:
  """The classes whose anchors have both positives and negatives to contrast with."""
  return [c for c, (a, p, n) in enumerate(pools) if len(a) and len(p) and len(n)]


def plan_batches(pools, *, num_anchors: int, num_positives: int, num_negatives: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
  """One epoch: every anchor of each usable class once, in chunks of `num_anchors` (shuffled
  within the class), each chunk followed by `num_positives` positives and `num_negatives`
  negatives of its class drawn from the pools (without replacement when a pool is large
  enough, else with); the batches of all classes in a random order."""
  batches = []
  for c in usable_classes(pools):
    anchors, positives, negatives = pools[c]
    order = rng.permutation(anchors)
    for start in range(0, len(order), num_anchors):
      pos = rng.choice(positives, size=num_positives, replace=len(positives) < num_positives)
      neg = rng.choice(negatives, size=num_negatives, replace=len(negatives) < num_negatives)
      batches.append(np.concatenate([order[start:start + num_anchors], pos, neg]))
  return [batches[i].astype(np.int64) for i in rng.permutation(len(batches))]


def steps_per_epoch(pools, *, num_anchors: int) -> int:
  """The number of batches `plan_batches` returns."""
  return sum(math.ceil(len(pools[c][0]) / num_anchors) for c in usable_classes(pools))
