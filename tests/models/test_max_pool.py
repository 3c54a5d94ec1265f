"""The CNN's 2x2 max pooling equals nn.max_pool bitwise, values and gradients, with ties (the
gradient goes to the first maximum of a window, as XLA's select-and-scatter routes it) and odd
sizes (VALID: the last row or column dropped), under jit and vmap."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.models.cnn import max_pool_2x2


def _reference(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("shape", [(3, 8, 8, 5), (2, 7, 9, 4), (2, 3, 3, 2), (1, 2, 5, 1)])
def test_values_and_gradients_equal_nn_max_pool_bitwise(shape):
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32)
  x[:, :2, :] = 0.5                       # whole windows of equal positive values
  x[:, -1, :] = np.round(x[:, -1, :])     # scattered ties
  g = rng.normal(size=(shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
  for transform in (lambda f: f, jax.jit):
    y0, vjp0 = transform(lambda a: jax.vjp(_reference, a))(x)
    y1, vjp1 = transform(lambda a: jax.vjp(max_pool_2x2, a))(x)
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(vjp0(g)[0], vjp1(g)[0])
  # Per-example gradients (the vmap DP rule) agree too.
  per0 = jax.vmap(jax.grad(lambda a, b: jnp.sum(_reference(a[None]) * b[None])))(x, g)
  per1 = jax.vmap(jax.grad(lambda a, b: jnp.sum(max_pool_2x2(a[None]) * b[None])))(x, g)
  np.testing.assert_array_equal(per0, per1)
