"""CIFAR ResNets: ResNet-20 / ResNet-32 (He et al. 2016, 3 stages of 3 / 5 basic blocks,
16/32/64 channels) and ResNet-18 (4 stages of 2 basic blocks, 64..512 channels, 3x3 stem for
32x32 inputs). `width` is the base channel count k: stage s has k * 2**s channels."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from robustdata.models.conv import conv_function
from robustdata.models.norm import make_norm


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual connection; 1x1 projection when the shape changes."""

  channels: int
  strides: int
  norm: str
  train: bool
  conv: str = "auto"

  @nn.compact
  def __call__(self, x):
    norm = make_norm(self.norm, self.train)
    bias = self.norm == "none"
    conv = conv_function(self.conv)
    h = nn.Conv(self.channels, (3, 3), (self.strides, self.strides), padding=1, use_bias=bias,
                name="conv1", conv_general_dilated=conv)(x)
    h = nn.relu(norm(name="norm1")(h))
    h = nn.Conv(self.channels, (3, 3), padding=1, use_bias=bias, name="conv2",
                conv_general_dilated=conv)(h)
    # Zero-init of the last norm's scale makes each block start as the identity.
    h = norm(name="norm2", scale_init=nn.initializers.zeros)(h) if self.norm != "none" else h
    if x.shape[-1] != self.channels or self.strides != 1:
      x = nn.Conv(self.channels, (1, 1), (self.strides, self.strides), use_bias=bias,
                  name="proj", conv_general_dilated=conv)(x)
      x = norm(name="proj_norm")(x)
    return nn.relu(h + x)


class ResNet(nn.Module):
  """A CIFAR-style ResNet of basic blocks; `stage_sizes` blocks per stage; `conv` is the
  convolution, 'auto', 'xla' or 'cpu' (`robustdata.models.conv`)."""

  num_classes: int
  stage_sizes: Sequence[int] = (3, 3, 3)
  width: int = 16
  norm: str = "batch"
  conv: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, return_features: bool = False):
    norm = make_norm(self.norm, train)
    h = nn.Conv(self.width, (3, 3), padding=1, use_bias=self.norm == "none", name="stem",
                conv_general_dilated=conv_function(self.conv))(x)
    h = nn.relu(norm(name="stem_norm")(h))
    for stage, blocks in enumerate(self.stage_sizes):
      for b in range(blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        h = BasicBlock(self.width * 2**stage, strides, self.norm, train, self.conv,
                       name=f"stage{stage}_block{b}")(h)
    features = jnp.mean(h, axis=(1, 2))
    logits = nn.Dense(self.num_classes, name="head")(features)
    return (logits, features) if return_features else logits


def ResNet20(num_classes: int, norm: str = "batch", width: int = 16) -> ResNet:
  return ResNet(num_classes=num_classes, stage_sizes=(3, 3, 3), width=width, norm=norm)


def ResNet32(num_classes: int, norm: str = "batch", width: int = 16) -> ResNet:
  """The CIFAR ResNet-32 of the width/density study (spec §8): 5 blocks per stage."""
  return ResNet(num_classes=num_classes, stage_sizes=(5, 5, 5), width=width, norm=norm)


def ResNet18(num_classes: int, norm: str = "batch", width: int = 64) -> ResNet:
  return ResNet(num_classes=num_classes, stage_sizes=(2, 2, 2, 2), width=width, norm=norm)
