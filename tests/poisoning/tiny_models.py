"""Tiny float32 models for the poisoning kernel tests (flattened NHWC input)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class TanhMLP(nn.Module):
  """x -> tanh(Dense) -> Dense logits; `return_features` gives the hidden layer."""

  hidden: int = 6
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    del train
    h = jnp.tanh(nn.Dense(self.hidden, name="hidden")(x.reshape((x.shape[0], -1))))
    logits = nn.Dense(self.num_classes, name="head")(h)
    return (logits, h) if return_features else logits


def make(seed: int = 0, *, shape=(4, 4, 1), hidden: int = 6, num_classes: int = 3):
  """(model, variables, logits_fn, features_fn) with weights scaled up so gradients are large."""
  model = TanhMLP(hidden=hidden, num_classes=num_classes)
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *shape)))
  variables = jax.tree_util.tree_map(lambda a: a * 2.0 + 0.1 * jnp.sign(a), variables)
  logits_fn = lambda v, x: model.apply(v, x)
  features_fn = lambda v, x: model.apply(v, x, return_features=True)[1]
  return model, variables, logits_fn, features_fn


def images(seed: int, n: int, shape=(4, 4, 1)) -> np.ndarray:
  return np.random.default_rng(seed).uniform(0.05, 0.95, (n, *shape)).astype(np.float32)


def np_params(variables):
  """The tanh MLP's (w1, b1, w2, b2) in float64."""
  p = variables["params"]
  f = lambda a: np.asarray(a, np.float64)
  return (f(p["hidden"]["kernel"]), f(p["hidden"]["bias"]), f(p["head"]["kernel"]),
          f(p["head"]["bias"]))


def np_grad(params, x, y, mask=None) -> np.ndarray:
  """Hand-written float64 gradient of the (masked) mean CE of the tanh MLP, flattened in the
  order hidden kernel, hidden bias, head kernel, head bias."""
  w1, b1, w2, b2 = params
  x = x.reshape(len(x), -1).astype(np.float64)
  m = np.ones(len(x)) if mask is None else np.asarray(mask, np.float64)
  h = np.tanh(x @ w1 + b1)
  z = h @ w2 + b2
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  dz = (p - np.eye(w2.shape[1])[np.asarray(y)]) * (m / m.sum())[:, None]
  dh = dz @ w2.T * (1 - h ** 2)
  return np.concatenate([(x.T @ dh).ravel(), dh.sum(0), (h.T @ dz).ravel(), dz.sum(0)])


def flat(tree) -> np.ndarray:
  """A params (or gradient) tree of the tanh MLP flattened like `np_grad`."""
  return np.concatenate([np.ravel(tree["hidden"]["kernel"]), np.ravel(tree["hidden"]["bias"]),
                         np.ravel(tree["head"]["kernel"]), np.ravel(tree["head"]["bias"])])
