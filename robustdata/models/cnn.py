"""A small convolutional network: fast enough for CPU runs, strong enough for digits."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from robustdata.models.conv import conv_function
from robustdata.models.norm import make_norm


class CNN(nn.Module):
  """conv-norm-relu blocks with 2x2 max pooling after each, then a Dense layer and a head.

  Attributes:
    num_classes: logits dimension.
    channels: output channels of the conv blocks.
    dense: width of the penultimate Dense layer (the `features` of `return_features`).
    norm: 'batch', 'group' or 'none' (use 'group' or 'none' with DP-SGD).
    conv: the convolution, 'auto', 'xla' or 'cpu' (`robustdata.models.conv`).
  """

  num_classes: int
  channels: Sequence[int] = (32, 64)
  dense: int = 128
  norm: str = "none"
  conv: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, return_features: bool = False):
    norm = make_norm(self.norm, train)
    conv = conv_function(self.conv)
    h = x
    for i, ch in enumerate(self.channels):
      h = nn.Conv(ch, (3, 3), padding="SAME", use_bias=self.norm == "none", name=f"conv{i}",
                  conv_general_dilated=conv)(h)
      h = norm(name=f"norm{i}")(h)
      h = nn.relu(h)
      if min(h.shape[1:3]) >= 2:
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape((h.shape[0], -1))
    h = nn.relu(nn.Dense(self.dense, name="dense")(h))
    logits = nn.Dense(self.num_classes, name="head")(h)
    return (logits, h) if return_features else logits
