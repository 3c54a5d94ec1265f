"""Ghost / book-keeping clipping equals vmap clipping on convnets with GroupNorm, strides,
padding, dilation, a circular-padded conv and a Dense layer called twice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.privacy import ghost, rules
from tests.privacy.privacy_models import ConvStack, SmallCNN, erm_coef, make_problem


@pytest.mark.parametrize("model,shape", [(SmallCNN(), (8, 8, 3)), (ConvStack(), (9, 9, 3))])
def test_ghost_equals_vmap(model, shape):
  loss_fn, params, batch = make_problem(model, batch_size=5, shape=shape)
  out = {}
  for method in ("vmap", "ghost"):
    rule = rules.make_dp_rule(mode="dp_sgd", clip_norm=0.3, noise_multiplier=0.5,
                              expected_batch_size=4, method=method)
    out[method] = jax.jit(lambda p, b: rule(loss_fn, p, {}, b, jax.random.PRNGKey(1),
                                            erm_coef))(params, batch)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         out["vmap"][0], out["ghost"][0])
  for key in ("grad_norm_mean", "clip_fraction", "loss"):
    np.testing.assert_allclose(out["vmap"][2][key], out["ghost"][2][key], rtol=1e-5)


@pytest.mark.parametrize("kernel,strides,padding,dilation", [
    ((3, 3), (1, 1), "SAME", (1, 1)), ((3, 3), (2, 2), "SAME", (1, 1)),
    ((1, 1), (2, 2), "VALID", (1, 1)), ((3, 2), (1, 2), ((1, 0), (2, 1)), (2, 1)),
])
def test_unfold_equals_lax_patches_up_to_feature_order(kernel, strides, padding, dilation):
  """The slicing unfold gives lax.conv_general_dilated_patches' patches, features in
  (offset, channel) rather than (channel, offset) order."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 8, 3)).astype(np.float32))
  plan = dict(filter_shape=kernel, window_strides=strides, padding=padding,
              lhs_dilation=(1, 1), rhs_dilation=dilation)
  ref = np.asarray(jax.lax.conv_general_dilated_patches(
      x, dimension_numbers=("NHWC", "HWIO", "NHWC"), **plan))
  got = np.asarray(ghost._unfold(x, **plan))  # pylint: disable=protected-access
  k = int(np.prod(kernel))
  reordered = ref.reshape(ref.shape[:-1] + (3, k)).swapaxes(-1, -2).reshape(ref.shape)
  np.testing.assert_allclose(got, reordered, atol=1e-6)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_masked_ghost_equals_masked_vmap(scope):
  """With a pruning mask, the masked Dense norms come from the closed form (a^2)^T M (g^2)
  (no per-example gradient) and the masked convs from per-example gradients: the clipped,
  noised gradient and the clip statistics equal the vmap rule's."""
  from robustdata.privacy import pruning  # pylint: disable=g-import-not-at-top
  loss_fn, params, batch = make_problem(SmallCNN(), batch_size=5, shape=(8, 8, 3))
  mask = pruning.magnitude_masks(params, sparsity=0.7, scope=scope)
  out = {}
  for method in ("vmap", "ghost"):
    rule = rules.make_dp_rule(mode="dp_sgd", clip_norm=0.05, noise_multiplier=0.5,
                              expected_batch_size=4, method=method, mask=mask)
    out[method] = jax.jit(lambda p, b, rule=rule: rule(loss_fn, p, {}, b, jax.random.PRNGKey(1),
                                                       erm_coef))(params, batch)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         out["vmap"][0], out["ghost"][0])
  assert 0 < float(out["vmap"][2]["clip_fraction"]) <= 1
  for key in ("grad_norm_mean", "clip_fraction", "loss"):
    np.testing.assert_allclose(out["vmap"][2][key], out["ghost"][2][key], rtol=1e-5)
