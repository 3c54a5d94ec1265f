"""A multi-layer perceptron classifier (flattens its input)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """ReLU MLP: flatten, hidden Dense layers, a linear classifier head."""

  num_classes: int
  hidden: Sequence[int] = (256, 128)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, return_features: bool = False):
    del train  # no dropout or batch statistics
    h = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    logits = nn.Dense(self.num_classes, name="head")(h)
    return (logits, h) if return_features else logits
