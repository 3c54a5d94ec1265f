"""Tiny flax models and a per-example loss for the privacy tests."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustdata.models.norm import GroupNorm


class MLP(nn.Module):
  """Two Dense layers with a LayerNorm between (a non-Dense parameter group)."""

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = jnp.reshape(x, (x.shape[0], -1))
    x = nn.relu(nn.Dense(16)(x))
    x = nn.LayerNorm()(x)
    return nn.Dense(3)(x)


class SmallCNN(nn.Module):
  """Conv + GroupNorm (the models' `norm.GroupNorm`) + Dense, as in the DP models."""

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.relu(GroupNorm(num_groups=4)(x))
    x = nn.Conv(8, (3, 3), strides=2, use_bias=False)(x)
    x = nn.relu(GroupNorm(num_groups=2)(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(3)(x)


class ConvStack(nn.Module):
  """Convs with stride, explicit / VALID padding and dilation; a shared Dense called twice."""

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = nn.relu(nn.Conv(4, (3, 3), strides=2, padding=((1, 2), (0, 1)))(x))
    x = nn.relu(nn.Conv(6, (2, 2), padding="VALID", kernel_dilation=2)(x))
    x = nn.relu(nn.Conv(5, (1, 1), padding="CIRCULAR")(x))
    x = jnp.reshape(x, (x.shape[0], -1))
    shared = nn.Dense(5)
    x = shared(nn.relu(shared(x[:, :5])))
    return nn.Dense(3)(x)


def make_problem(model: nn.Module, *, batch_size: int = 6, shape=(8, 8, 3), seed: int = 0):
  """(loss_fn, params, batch) for a model on random inputs with a padding row at the end."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch_size,) + tuple(shape)).astype(np.float32)
  y = rng.integers(0, 3, size=batch_size).astype(np.int32)
  mask = np.ones(batch_size, np.float32)
  mask[-1] = 0.0
  batch = {"x": jnp.asarray(x), "y": jnp.asarray(y),
           "weight": jnp.asarray(rng.uniform(0.5, 1.5, batch_size).astype(np.float32)),
           "mask": jnp.asarray(mask), "index": jnp.arange(batch_size)}
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), batch["x"][:1])["params"]

  def loss_fn(params, model_state, batch, rng, train=True):
    logits = model.apply({"params": params, **model_state}, batch["x"], train=train)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    return losses, (model_state, logits)
  return loss_fn, params, batch


def erm_coef(losses, batch):
  """ERM coefficients: the policy weights."""
  return batch["weight"]
