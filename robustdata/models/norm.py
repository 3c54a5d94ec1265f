"""The normalisation layer choice shared by the convolutional models."""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn

from robustdata.registry import ConfigError

NORMS = ("batch", "group", "none")


def make_norm(norm: str, train: bool, *, group_size: int = 16) -> Callable[..., nn.Module]:
  """A constructor for the named normalisation layer.

  'batch' keeps running statistics in the `batch_stats` collection (not usable under DP-SGD);
  'group' is GroupNorm with groups of `group_size` channels (or one group when fewer);
  'none' is the identity.
  """
  if norm == "batch":
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5)
  if norm == "group":
    def group_norm(name=None, scale_init=nn.initializers.ones):
      return _GroupNorm(group_size=group_size, name=name, scale_init=scale_init)
    return group_norm
  if norm == "none":
    return lambda name=None, scale_init=None: _Identity(name=name)
  raise ConfigError(f"config.model.norm={norm!r} is not known; allowed values: {list(NORMS)}")


class _GroupNorm(nn.Module):
  group_size: int = 16
  scale_init: Callable = nn.initializers.ones

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    groups = max(1, channels // self.group_size)
    return nn.GroupNorm(num_groups=groups, epsilon=1e-5, scale_init=self.scale_init)(x)


class _Identity(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x
