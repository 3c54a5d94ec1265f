"""The normalisation layer choice shared by the convolutional models."""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

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
    def group_norm_layer(name=None, scale_init=nn.initializers.ones):
      return _GroupNorm(group_size=group_size, name=name, scale_init=scale_init)
    return group_norm_layer
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
    return GroupNorm(num_groups=groups, epsilon=1e-5, scale_init=self.scale_init)(x)


class _Identity(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x


class GroupNorm(nn.Module):
  """`nn.GroupNorm` over channels-last input (its `scale` and `bias` parameters, its
  initialisers, its fast variance, its numbers to float32 rounding) computed by `group_norm`.

  Attributes:
    num_groups: groups of consecutive channels (the channel count must be a multiple).
    epsilon: added to each group's variance.
  """

  num_groups: int
  epsilon: float = 1e-6
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    if self.num_groups < 1 or channels % self.num_groups:
      raise ConfigError(f"GroupNorm: {channels} channels do not split into num_groups="
                        f"{self.num_groups} equal groups (allowed: a divisor of {channels})")
    scale = self.param("scale", self.scale_init, (channels,), jnp.float32)
    bias = self.param("bias", self.bias_init, (channels,), jnp.float32)
    return group_norm(x, scale, bias, self.num_groups, self.epsilon)


def group_norm(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray, num_groups: int,
               epsilon: float) -> jnp.ndarray:
  """GroupNorm of x [B, ..., C] (statistics per example over its positions and each group of
  C / num_groups consecutive channels), then `* scale + bias` per channel.

  The statistics are sums over the positions per channel, a reduction over a major axis that
  XLA:CPU fuses with the squaring, then sums over each group's few channels; the variance is
  E[x^2] - E[x]^2 (clipped at 0), as `nn.GroupNorm`'s default. The backward pass is written
  out (a custom VJP): two such per-channel sums of the cotangent, then one elementwise pass.
  Reverse mode, reverse over reverse and forward over reverse (CREST's Hessian-vector
  products) work; forward mode alone (`jax.jvp` of the layer) does not, as for any custom VJP.
  `nn.GroupNorm` reduces the [B, ..., G, C/G] view over all but two axes at once, which XLA:CPU
  runs several times slower (docs/results/speed.md, "GroupNorm"); this is the same function
  to float32 rounding, forward and backward (tests/models/test_norm.py checks both against
  float64 NumPy)."""
  dtype = jnp.result_type(x, scale)
  return _group_norm(num_groups, float(epsilon), x.astype(jnp.float32), scale.astype(jnp.float32),
                     bias.astype(jnp.float32)).astype(dtype)


def _channels(v: jnp.ndarray, channels: int) -> jnp.ndarray:
  """[B, G] (or [B, C]) -> [B, C]: each group's value repeated over its channels."""
  return v if v.shape[1] == channels else jnp.repeat(v, channels // v.shape[1], axis=1)


def _per_channel(v: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """[B, G] (or [B, C]) -> [B, 1, ..., 1, C], broadcastable against x."""
  channels = x.shape[-1]
  return jnp.reshape(_channels(v, channels), (x.shape[0],) + (1,) * (x.ndim - 2) + (channels,))


def _channel_sums(v: jnp.ndarray) -> jnp.ndarray:
  """[B, ..., C] -> [B, C]: sums over the positions."""
  return jnp.sum(jnp.reshape(v, (v.shape[0], -1, v.shape[-1])), axis=1)


def _group_sums(v: jnp.ndarray, num_groups: int) -> jnp.ndarray:
  """[B, C] -> [B, G]: sums over each group's channels."""
  return jnp.sum(jnp.reshape(v, (v.shape[0], num_groups, -1)), axis=-1)


def _group_count(x: jnp.ndarray, num_groups: int) -> int:
  return (x.size // x.shape[0]) // num_groups


def _statistics(x, num_groups, epsilon):
  count = _group_count(x, num_groups)
  mean = _group_sums(_channel_sums(x), num_groups) / count
  mean_sq = _group_sums(_channel_sums(x * x), num_groups) / count
  return mean, lax.rsqrt(jnp.maximum(mean_sq - mean * mean, 0.0) + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _group_norm(num_groups, epsilon, x, scale, bias):
  return _group_norm_fwd(num_groups, epsilon, x, scale, bias)[0]


def _group_norm_fwd(num_groups, epsilon, x, scale, bias):
  mean, inv = _statistics(x, num_groups, epsilon)
  y = (x - _per_channel(mean, x)) * (_per_channel(inv, x) * scale) + bias
  return y, (x, scale, mean, inv)


def _group_norm_bwd(num_groups, epsilon, residuals, g):
  # With xhat = (x - mean) * inv and y = xhat * scale + bias, per example and group (n values):
  # dx = inv * (scale * g - mean(scale * g) - xhat * mean(scale * g * xhat)).
  del epsilon
  x, scale, mean, inv = residuals
  centred = x - _per_channel(mean, x)
  g_sum = _channel_sums(g)                    # [B, C]
  g_xhat = _channel_sums(g * centred) * _channels(inv, x.shape[-1])
  count = _group_count(x, num_groups)
  mean_g = _group_sums(g_sum * scale, num_groups) / count        # [B, G]
  mean_gx = _group_sums(g_xhat * scale, num_groups) / count      # [B, G]
  dx = (_per_channel(inv, x) * scale * g - _per_channel(inv * mean_g, x)
        - centred * _per_channel(inv * inv * mean_gx, x))
  return dx, jnp.sum(g_xhat, axis=0), jnp.sum(g_sum, axis=0)


_group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)
