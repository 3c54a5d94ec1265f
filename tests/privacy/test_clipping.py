"""Per-example gradients and clipping: vmap == micro-batched vmap == ghost == Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.privacy import clipping, rules
from tests.privacy.privacy_models import MLP, erm_coef, make_problem


def _run(rule, loss_fn, params, batch):
  return jax.jit(lambda p, b: rule(loss_fn, p, {}, b, jax.random.PRNGKey(3), erm_coef))(
      params, batch)


def _loop_reference(loss_fn, params, batch, *, clip_norm, per_layer):
  """Clipped sum from per-example grads computed one example at a time with jax.grad."""
  total = jax.tree_util.tree_map(lambda v: np.zeros(v.shape, np.float64), params)
  groups = clipping.layer_groups(params)
  grad_one = jax.jit(jax.grad(lambda p, ex, w: w * loss_fn(p, {}, ex, None)[0][0]))
  for i in range(batch["x"].shape[0]):
    if batch["mask"][i] == 0:
      continue
    ex = jax.tree_util.tree_map(lambda a: a[i:i + 1], batch)
    g = grad_one(params, ex, batch["weight"][i])
    flat = {k: np.asarray(v, np.float64) for k, v in clipping.flatten(g).items()}
    if per_layer:
      scale = {}
      for keys in groups.values():
        norm = np.sqrt(sum(np.sum(flat[k] ** 2) for k in keys))
        for k in keys:
          scale[k] = min(1.0, clip_norm / np.sqrt(len(groups)) / norm)
    else:
      norm = np.sqrt(sum(np.sum(v ** 2) for v in flat.values()))
      scale = {k: min(1.0, clip_norm / norm) for k in flat}
    flat_total = clipping.flatten(total)
    total = clipping.unflatten({k: flat_total[k] + scale[k] * flat[k] for k in flat})
  return total


@pytest.mark.parametrize("per_layer", [False, True])
def test_methods_match_python_loop(per_layer):
  loss_fn, params, batch = make_problem(MLP(), batch_size=4, shape=(3, 2))
  expected = _loop_reference(loss_fn, params, batch, clip_norm=0.7, per_layer=per_layer)
  expected = jax.tree_util.tree_map(lambda v: v / 3.0, expected)
  methods = [("ghost", None), ("vmap", 2)] if per_layer else [("vmap", None), ("ghost", None)]
  for method, micro in methods:
    rule = rules.make_dp_rule(mode="clip_only", clip_norm=0.7, noise_multiplier=0.0,
                              expected_batch_size=3, method=method, microbatch_size=micro,
                              per_layer=per_layer)
    grads, _, aux = _run(rule, loss_fn, params, batch)
    np.testing.assert_allclose(float(aux["batch_size"]), 3.0)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                           grads, expected)


def test_per_example_grads_equal_loop():
  loss_fn, params, batch = make_problem(MLP(), batch_size=3, shape=(3, 2))
  got, losses = jax.jit(lambda p: clipping.per_example_grads(
      loss_fn, p, {}, batch, jax.random.PRNGKey(0), method="vmap"))(params)
  grad_one = jax.jit(jax.grad(lambda p, ex: loss_fn(p, {}, ex, None)[0][0]))
  for i in range(3):
    ex = jax.tree_util.tree_map(lambda a: a[i:i + 1], batch)
    ref = grad_one(params, ex)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5,
                                                                   atol=1e-7), got, ref)
    np.testing.assert_allclose(losses[i], loss_fn(params, {}, ex, None)[0][0], rtol=1e-6)


def test_clipped_norms_never_exceed_clip_norm():
  rng = np.random.default_rng(0)
  sq = jnp.asarray(rng.exponential(4.0, size=(64, 5)).astype(np.float32))
  for per_layer in (False, True):
    f = clipping.clip_factors(sq, clip_norm=1.3, per_layer=per_layer, clip=True)
    clipped = np.sqrt(np.sum(np.asarray(f) ** 2 * np.asarray(sq), axis=1))
    assert np.all(clipped <= 1.3 * (1 + 1e-6))
    assert np.all(np.asarray(f) <= 1.0)
  # End to end: one real example, so the returned gradient is that example's clipped gradient.
  loss_fn, params, batch = make_problem(MLP(), batch_size=2, shape=(3, 2))
  rule = rules.make_dp_rule(mode="clip_only", clip_norm=0.05, noise_multiplier=0.0,
                            expected_batch_size=1, method="vmap")
  grads, _, aux = _run(rule, loss_fn, params, batch)
  norm = np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in jax.tree_util.tree_leaves(grads)))
  assert norm <= 0.05 * (1 + 1e-5)
  assert float(aux["clip_fraction"]) == 1.0


def test_sgd_mode_is_plain_sum_over_expected_batch():
  loss_fn, params, batch = make_problem(MLP(), batch_size=4, shape=(3, 2))
  rule = rules.make_dp_rule(mode="sgd", clip_norm=1e-3, noise_multiplier=5.0,
                            expected_batch_size=3, method="ghost")
  grads, _, aux = _run(rule, loss_fn, params, batch)
  plain = jax.jit(jax.grad(lambda p: jnp.sum(batch["mask"] * batch["weight"]
                                             * loss_fn(p, {}, batch, None)[0]) / 3.0))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         grads, plain)
  assert float(aux["clip_fraction"]) == 0.0 and float(aux["noise_std"]) == 0.0
