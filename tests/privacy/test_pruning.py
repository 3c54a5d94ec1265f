"""Magnitude pruning: sparsity, scope, and no gradient / no noise on pruned coordinates."""

import jax
import numpy as np
import pytest

from robustdata.privacy import clipping, pruning, rules
from tests.privacy.privacy_models import MLP, erm_coef, make_problem


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_mask_sparsity(scope):
  _, params, _ = make_problem(MLP(), batch_size=2, shape=(3, 2))
  mask = pruning.magnitude_masks(params, sparsity=0.7, scope=scope)
  flat_p, flat_m = clipping.flatten(params), clipping.flatten(mask)
  kernels = [k for k in flat_p if k[-1] == "kernel"]
  total = sum(flat_p[k].size for k in kernels)
  pruned = sum(int(np.sum(flat_m[k] == 0)) for k in kernels)
  assert pruned == round(0.7 * total) or scope == "layer"
  for k in flat_p:
    if k[-1] != "kernel":
      assert np.all(flat_m[k] == 1)
    elif scope == "layer":
      assert int(np.sum(flat_m[k] == 0)) == round(0.7 * flat_p[k].size)
    # Every kept weight is at least as large as every pruned weight (within scope).
  if scope == "global":
    kept = np.concatenate([np.abs(flat_p[k])[flat_m[k] == 1] for k in kernels])
    gone = np.concatenate([np.abs(flat_p[k])[flat_m[k] == 0] for k in kernels])
    assert kept.min() >= gone.max()
  n_all = sum(v.size for v in flat_p.values())
  assert pruning.effective_dimension(params, mask) == n_all - pruned
  assert pruning.should_prune(0, prune_every_epochs=0)
  assert not pruning.should_prune(3, prune_every_epochs=0)
  assert pruning.should_prune(4, prune_every_epochs=2)


@pytest.mark.parametrize("method", ["vmap", "ghost"])
def test_pruned_coordinates_get_no_gradient_and_no_noise(method):
  loss_fn, params, batch = make_problem(MLP(), batch_size=4, shape=(3, 2))
  mask = pruning.magnitude_masks(params, sparsity=0.5, scope="global")
  run = lambda rule: jax.jit(lambda p: rule(loss_fn, p, {}, batch, jax.random.PRNGKey(2),
                                            erm_coef))(params)
  grads, _, _ = run(rules.make_dp_rule(mode="dp_sgd", clip_norm=0.5, noise_multiplier=1.0,
                                       expected_batch_size=3, method=method, mask=mask))
  flat_g, flat_m = clipping.flatten(grads), clipping.flatten(mask)
  for k, g in flat_g.items():
    assert np.all(np.asarray(g)[flat_m[k] == 0] == 0)
    assert np.all(np.asarray(g)[flat_m[k] == 1] != 0)
  # The clip uses the masked per-example norm: equal to clipping the masked gradient by hand.
  ref, _, _ = run(rules.make_dp_rule(mode="clip_only", clip_norm=0.5, noise_multiplier=0.0,
                                     expected_batch_size=3, method="loop", mask=mask))
  clip_only, _, _ = run(rules.make_dp_rule(mode="clip_only", clip_norm=0.5,
                                           noise_multiplier=0.0, expected_batch_size=3,
                                           method=method, mask=mask))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         clip_only, ref)
