"""`norm.GroupNorm` / `norm.group_norm` (the GroupNorm of the CNN, the ResNets and the CLIP
ConvTower): values and gradients against float64 NumPy (the forward pass in closed form, the
gradients by central differences of it), and against `nn.GroupNorm` as a drop-in: the same
parameters and initialisers, the same numbers to float32 rounding under jit and per-example
vmap."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.models import CNN, ResNet20
from robustdata.models.norm import GroupNorm, group_norm
from robustdata.registry import ConfigError

# (input shape, groups): NHWC images, a sequence, a flat vector, one channel per group, one group.
CASES = [((3, 5, 6, 16), 8), ((2, 4, 4, 32), 2), ((2, 7, 12), 4), ((4, 12), 3),
         ((2, 3, 3, 8), 8), ((1, 4, 4, 6), 1)]


def _numpy_group_norm(x, scale, bias, groups, eps):
  """Float64: (x - mean) / sqrt(var + eps) per example and group, then * scale + bias."""
  b, c = x.shape[0], x.shape[-1]
  xg = x.reshape(b, -1, groups, c // groups)
  mean = xg.mean(axis=(1, 3), keepdims=True)
  var = ((xg - mean) ** 2).mean(axis=(1, 3), keepdims=True)
  return ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def _inputs(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape) * 2.0 + 0.7
  scale = rng.uniform(0.5, 1.5, size=shape[-1])
  bias = rng.normal(size=shape[-1])
  w = rng.normal(size=shape)  # the loss is sum(w * y)
  return x, scale, bias, w


@pytest.mark.parametrize("shape,groups", CASES)
def test_values_and_gradients_match_float64_numpy(shape, groups):
  eps = 1e-5
  x, scale, bias, w = _inputs(shape)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  loss = lambda x_, s_, b_: jnp.sum(f32(w) * group_norm(x_, s_, b_, groups, eps))
  y = jax.jit(group_norm, static_argnums=(3, 4))(f32(x), f32(scale), f32(bias), groups, eps)
  np.testing.assert_allclose(y, _numpy_group_norm(x, scale, bias, groups, eps),
                             rtol=1e-5, atol=1e-5)
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(f32(x), f32(scale), f32(bias))
  # Directional derivatives of the float64 loss by central differences, one per argument.
  ref_loss = lambda a: float(np.sum(w * _numpy_group_norm(*a, groups, eps)))
  rng, h = np.random.default_rng(1), 1e-5
  for i, grad in enumerate(grads):
    for _ in range(3):
      args = [x, scale, bias]
      v = rng.normal(size=args[i].shape)
      plus, minus = list(args), list(args)
      plus[i], minus[i] = args[i] + h * v, args[i] - h * v
      numeric = (ref_loss(plus) - ref_loss(minus)) / (2 * h)
      got = float(np.sum(np.asarray(grad, np.float64) * v))
      assert abs(got - numeric) <= 1e-4 * (1 + abs(numeric)), (i, got, numeric)


@pytest.mark.parametrize("shape,groups", [CASES[0], CASES[2], CASES[3], CASES[5]])
def test_module_is_nn_group_norm_to_float32_rounding(shape, groups):
  x, scale, bias, w = _inputs(shape, seed=2)
  x, w = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
  ours, theirs = GroupNorm(num_groups=groups), nn.GroupNorm(num_groups=groups)
  init_ours = jax.jit(ours.init)(jax.random.PRNGKey(0), x)
  init_theirs = jax.jit(theirs.init)(jax.random.PRNGKey(0), x)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), init_ours) == jax.tree.map(
      lambda a: (a.shape, a.dtype), init_theirs)
  jax.tree.map(np.testing.assert_array_equal, init_ours, init_theirs)
  params = {"params": {"scale": jnp.asarray(scale, jnp.float32),
                       "bias": jnp.asarray(bias, jnp.float32)}}

  def outputs(module):
    loss = lambda p, a: jnp.sum(w * module.apply(p, a))
    # Per-example gradients (the DP-SGD vmap rule): each example alone, batch of one.
    per_example = jax.jit(jax.vmap(
        jax.grad(lambda p, a, v: jnp.sum(v * module.apply(p, a[None])[0])),
        in_axes=(None, 0, 0)))(params, x, w)
    return jax.jit(module.apply)(params, x), jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x), \
        per_example

  for a, b in zip(jax.tree.leaves(outputs(ours)), jax.tree.leaves(outputs(theirs))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)

  # Forward over reverse (CREST's Hessian-vector products) through the written-out backward.
  def hvp(module):
    loss = lambda p: jnp.sum(w * jnp.tanh(module.apply(p, x)))
    tangent = jax.tree.map(jnp.ones_like, params)
    return jax.jit(lambda p: jax.jvp(jax.grad(loss), (p,), (tangent,))[1])(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
               hvp(ours), hvp(theirs))


def test_models_keep_their_parameter_tree():
  """The CNN and ResNet-20 with norm='group' have the parameter names and shapes that
  nn.GroupNorm gave them (checkpoints written before keep loading)."""
  x = jnp.zeros((2, 32, 32, 3))
  for model in (CNN(10, norm="group"), ResNet20(10, norm="group")):
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    tree = jax.tree_util.tree_flatten_with_path(shapes)[0]
    norms = {jax.tree_util.keystr(path): leaf.shape for path, leaf in tree
             if "GroupNorm_0" in jax.tree_util.keystr(path)}
    assert norms and all(k.endswith(("['scale']", "['bias']")) for k in norms), norms


def test_channels_that_do_not_split_into_the_groups_are_a_clear_error():
  with pytest.raises(ConfigError, match=r"12 channels do not split into num_groups=5"):
    GroupNorm(num_groups=5).init(jax.random.PRNGKey(0), jnp.zeros((2, 3, 3, 12)))
