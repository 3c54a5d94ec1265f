"""Per-class budgets, weights, round-robin order, input validation and gradient proxies."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustdata.registry import ConfigError
from robustdata.selection import (class_budgets, facility_location, last_layer_proxy,
                                  linear_layer_proxy, normalize_weights, round_robin)
from tests.selection import reference


def test_equal_budgets_redistribute_shortfall():
  # ceil(30/3) = 10 each; class 1 has 3, its shortfall 7 goes ceil(7/2) = 4 to each other class.
  np.testing.assert_array_equal(class_budgets([100, 3, 50], 30), [14, 3, 14])
  # Three singleton classes: shortfall 12 all goes to the only class with room.
  np.testing.assert_array_equal(class_budgets([1, 1, 1, 100], 20), [1, 1, 1, 17])
  # Redistribution that overflows a second class is redistributed again.
  # [10, 10, 10] -> [2, 14, 14] -> [2, 12, 16].
  np.testing.assert_array_equal(class_budgets([2, 12, 100], 30), [2, 12, 16])


def test_proportional_budgets():
  np.testing.assert_array_equal(class_budgets([10, 30, 60], 10, equal_num=False), [1, 3, 6])
  np.testing.assert_array_equal(class_budgets([1, 1, 98], 10, equal_num=False), [1, 1, 10])


@pytest.mark.parametrize("equal_num", [True, False])
def test_budget_invariants_random(equal_num):
  rng = np.random.default_rng(0)
  for _ in range(200):
    counts = rng.integers(1, 40, size=rng.integers(1, 12))
    budget = int(rng.integers(1, counts.sum() + 1))
    k = class_budgets(counts, budget, equal_num=equal_num)
    assert np.all(k <= counts) and np.all(k >= 0)
    assert k.sum() >= budget
    if equal_num:  # the uncapped classes share the remainder evenly
      free = k < counts
      assert np.ptp(k[free]) == 0 if free.any() else True


def test_facility_location_end_to_end():
  """Budgets per class, distinct indices, round-robin order, weights = class cluster sizes."""
  rng = np.random.default_rng(1)
  labels = np.repeat([0, 1, 2], [120, 2, 60])
  rng.shuffle(labels)
  proxies = rng.normal(size=(len(labels), 4))
  idx, w = facility_location(proxies, labels, budget=30, kernel="craig")
  per_class = np.bincount(labels[idx], minlength=3)
  np.testing.assert_array_equal(per_class, class_budgets([120, 2, 60], 30))
  assert len(np.unique(idx)) == len(idx)
  np.testing.assert_array_equal(labels[idx[:3]], [0, 1, 2])  # first pick of each class
  np.testing.assert_array_equal(labels[idx[3:5]], [0, 1])
  assert labels[idx[5]] == 2 and set(labels[idx[6:]]) == {0, 2}
  for c, size in enumerate([120, 2, 60]):
    assert w[labels[idx] == c].sum() == size
  # Within a class, the order and weights are the brute-force greedy's.
  members = np.flatnonzero(labels == 0)
  sim = reference.similarity(proxies[members], "craig")
  order = reference.greedy(sim, per_class[0])
  np.testing.assert_array_equal(idx[labels[idx] == 0], members[order])
  np.testing.assert_array_equal(w[labels[idx] == 0], reference.cluster_sizes(sim, order))
  wn = normalize_weights(w)
  assert wn.dtype == np.float32 and abs(wn.mean() - 1) < 1e-6


def test_round_robin():
  order = round_robin([np.array([5, 6, 7]), np.array([1]), np.array([9, 8])])
  np.testing.assert_array_equal(np.concatenate([[5, 6, 7], [1], [9, 8]])[order],
                                [5, 1, 9, 6, 8, 7])


@pytest.mark.parametrize("kwargs, field", [
    (dict(budget=0), "budget"), (dict(budget=11), "budget"), (dict(budget=2.5), "budget"),
    (dict(budget=3, kernel="cosine"), "kernel"), (dict(budget=3, method="fast"), "method"),
    (dict(budget=3, num_classes=3), "labels"),
])
def test_bad_input_raises_config_error(kwargs, field):
  proxies = np.random.default_rng(0).normal(size=(10, 3))
  labels = np.array([0] * 5 + [1] * 5)
  with pytest.raises(ConfigError, match=field):
    facility_location(proxies, labels, **kwargs)


def test_nan_proxies_raise():
  proxies = np.ones((6, 2))
  proxies[3, 1] = np.nan
  with pytest.raises(ConfigError, match="proxies"):
    facility_location(proxies, np.zeros(6, int), budget=2)


def test_empty_class_allowed_when_proportional():
  proxies = np.random.default_rng(0).normal(size=(10, 3))
  labels = np.array([0] * 5 + [2] * 5)
  idx, _ = facility_location(proxies, labels, budget=4, num_classes=3, equal_num=False)
  assert len(idx) == 4


def test_last_layer_proxy():
  rng = np.random.default_rng(0)
  logits, labels = rng.normal(size=(7, 5)), rng.integers(0, 5, 7)
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  expected = p - np.eye(5)[labels]
  np.testing.assert_allclose(last_layer_proxy(jnp.asarray(logits), jnp.asarray(labels)),
                             expected, atol=1e-6)


def test_linear_layer_proxy_is_last_layer_gradient():
  """(softmax - onehot) ⊗ features equals the per-example CE gradient w.r.t. the Dense kernel."""
  rng = np.random.default_rng(1)
  feats = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, 6))

  def loss(k, f, y):
    return optax.softmax_cross_entropy_with_integer_labels(f @ k, y)

  grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(kernel, feats, labels)  # (6, 4, 3)
  proxy = linear_layer_proxy(feats @ kernel, labels, feats)
  np.testing.assert_allclose(proxy, grads.transpose(0, 2, 1).reshape(6, -1), atol=1e-5)
