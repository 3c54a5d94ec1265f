"""GroupDRO's online group-weight update (Sagawa et al.; SpuCo's GroupDRO), as a pure JAX kernel.

With per-group mean losses L_g over the groups present in the batch, the weights follow
q <- q * exp(step_size * L_g) (absent groups keep their weight), then q <- q / sum(q). The
robust loss is sum over present groups of q_g * L_g; it is returned as per-example coefficients
coef_i = q_{g_i} * B / n_{g_i} (B = number of real rows) so that the plain gradient rule's
sum(mask * coef * loss) / sum(mask) equals it, and per-example clipping sees each example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def group_mean_losses(losses: jnp.ndarray, groups: jnp.ndarray, mask: jnp.ndarray, *,
                      num_groups: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(mean loss per group (0 where absent), real examples per group) of a padded batch."""
  mask = mask.astype(losses.dtype)
  onehot = jax.nn.one_hot(groups, num_groups, dtype=losses.dtype) * mask[:, None]
  counts = onehot.sum(0)
  sums = onehot.T @ losses
  return sums / jnp.maximum(counts, 1.0), counts


def groupdro_update(q: jnp.ndarray, losses: jnp.ndarray, groups: jnp.ndarray, mask: jnp.ndarray,
                    *, step_size: float) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """(new q, per-example coefficients, per-group mean losses) for one batch.

  `losses` should be stop-gradient; `mask` is 1 for real rows and 0 for padding.
  """
  num_groups = q.shape[0]
  group_loss, counts = group_mean_losses(losses, groups, mask, num_groups=num_groups)
  present = counts > 0
  q = q * jnp.exp(step_size * jnp.where(present, group_loss, 0.0))
  q = q / q.sum()
  batch = jnp.maximum(mask.astype(losses.dtype).sum(), 1.0)
  per_group_coef = jnp.where(present, q * batch / jnp.maximum(counts, 1.0), 0.0)
  coef = per_group_coef[groups] * mask.astype(losses.dtype)
  return q, coef, group_loss


def init_group_weights(num_groups: int) -> jnp.ndarray:
  """The uniform initial weights q = 1 / num_groups."""
  return jnp.full((num_groups,), 1.0 / num_groups, dtype=jnp.float32)
