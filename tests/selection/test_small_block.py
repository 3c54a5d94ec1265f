"""The host NumPy greedy for small class blocks against the jitted greedies and brute force."""

import jax
import numpy as np
import pytest

from robustdata.selection import cluster_weights, facility_location, greedy_select
from robustdata.selection.facility_location import (
    SMALL_MAX, _auto_method, facility_location_many, numpy_select, numpy_select_many)
from tests.selection import reference


def _random_block(rng, trial, dtype):
  n = int(rng.choice([7, 40, 97, SMALL_MAX])) if trial else 13  # few shapes: few compiles
  d = int(rng.choice([2, 10, 40]))
  k = max(1, n // 2) if trial % 2 else min(5, n)
  return (rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0)).astype(dtype), k


def _assert_same_greedy(x, kernel, ours, jitted, rtol):
  """Equal orders, or equal up to a pick where both candidates' exact (float64) marginal gains
  tie within rtol: the CRAIG kernel has exact ties (e.g. mutual nearest neighbours), which the
  NumPy greedy, like the brute force, gives to the lower index while the jitted greedy's
  rounding may pick either. After such a tie the two greedy paths legitimately diverge."""
  if np.array_equal(ours, jitted):
    return True
  t = int(np.argmax(ours != jitted))
  sim = reference.similarity(x, kernel)
  cur = sim[:, ours[:t]].max(axis=1) if t else np.zeros(len(x))
  gains = np.maximum(sim - cur[:, None], 0.0).sum(axis=0)
  a, b = gains[ours[t]], gains[jitted[t]]
  assert abs(a - b) <= rtol * abs(a), (x.shape, t, ours[t], jitted[t], a, b)
  return False


@pytest.mark.parametrize("kernel", ["craig", "exp"])
def test_numpy_select_equals_jitted_float64(kernel):
  """Same picks, same order and same cluster-size weights as the jitted lazy and dense greedies
  on random blocks of sizes up to SMALL_MAX and any k, up to exact ties (float64)."""
  rng = np.random.default_rng(7)
  identical = 0
  with jax.enable_x64(True):
    for trial in range(4):
      x, k = _random_block(rng, trial, np.float64)
      order, weights = numpy_select(x, k, kernel=kernel)
      identical += _assert_same_greedy(
          x, kernel, order, reference.greedy(reference.similarity(x, kernel), k), 1e-9)
      for method in ("lazy", "dense"):
        jitted = greedy_select(x, k, kernel=kernel, method=method)
        identical += _assert_same_greedy(x, kernel, order, jitted, 1e-9)
      np.testing.assert_array_equal(weights, cluster_weights(x, order, kernel=kernel))
      assert weights.sum() >= len(x) if kernel == "exp" else weights.sum() == len(x)
  assert identical >= 6  # most random blocks have no tie at all


@pytest.mark.parametrize("kernel", ["craig", "exp"])
def test_numpy_select_equals_jitted_float32(kernel):
  """float32 proxies (CREST's): the jitted greedy runs in float32, the NumPy one in float64, so
  picks may differ only at (near-)ties, gains equal to float32 rounding; the weights of a common
  selection are identical and the F values of both full selections agree to 1e-5."""
  rng = np.random.default_rng(7)
  identical = 0
  for trial in range(4):
    x, k = _random_block(rng, trial, np.float32)
    order, weights = numpy_select(x, k, kernel=kernel)
    jitted = greedy_select(x, k, kernel=kernel, method="lazy")
    identical += _assert_same_greedy(x, kernel, order, jitted, 1e-5)
    np.testing.assert_array_equal(weights, cluster_weights(x, order, kernel=kernel))
    sim = reference.similarity(x, kernel)
    f_np, f_jit = reference.value(sim, order), reference.value(sim, jitted)
    assert abs(f_np - f_jit) <= 1e-5 * abs(f_np), (x.shape, k, f_np, f_jit)
  assert identical >= 2


@pytest.mark.parametrize("kernel", ["craig", "exp"])
def test_numpy_select_matches_brute_force(kernel):
  """The textbook greedy's picks up to exact float64 ties (see _assert_same_greedy), weighted
  by the sizes of the picks' clusters."""
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    x = rng.normal(size=(90, 6))
    sim = reference.similarity(x, kernel)
    order, weights = numpy_select(x, 20, kernel=kernel)
    _assert_same_greedy(x, kernel, order, reference.greedy(sim, 20), 1e-12)
    np.testing.assert_array_equal(weights, reference.cluster_sizes(sim, order))


def test_auto_uses_numpy_for_small_blocks_and_agrees_with_jitted():
  """CREST's shape: 10 classes of 13 points, budget 50. 'auto' (NumPy per class) returns the
  brute-force greedy's picks per class and their cluster sizes as weights, up to exact ties, and
  the jitted lazy greedy's picks up to ties."""
  assert _auto_method(SMALL_MAX, 10, 20_000) == "numpy"
  assert _auto_method(SMALL_MAX + 1, 10, 20_000) == "lazy"
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 13)
  rng.shuffle(labels)
  for kernel in ("exp", "craig"):
    x = rng.normal(size=(130, 10)).astype(np.float32)
    idx_auto, w_auto = facility_location(x, labels, budget=50, kernel=kernel, method="auto")
    idx_np, w_np = facility_location(x, labels, budget=50, kernel=kernel, method="numpy")
    idx_jit, _ = facility_location(x, labels, budget=50, kernel=kernel, method="lazy")
    idx_off, _ = facility_location(x, labels, budget=50, kernel=kernel, small_max=0)
    np.testing.assert_array_equal(idx_auto, idx_np)
    np.testing.assert_array_equal(w_auto, w_np)
    np.testing.assert_array_equal(idx_off, idx_jit)  # small_max=0: every block jitted
    for c in range(10):
      members = np.flatnonzero(labels == c)
      pos = {m: i for i, m in enumerate(members)}
      ours = np.array([pos[i] for i in idx_auto[labels[idx_auto] == c]])
      jitted = np.array([pos[i] for i in idx_jit[labels[idx_jit] == c]])
      sim = reference.similarity(x[members], kernel)
      _assert_same_greedy(x[members], kernel, ours, reference.greedy(sim, 5), 1e-12)
      np.testing.assert_array_equal(w_auto[labels[idx_auto] == c],
                                    reference.cluster_sizes(sim, ours))
      _assert_same_greedy(x[members], kernel, ours, jitted, 1e-5)


@pytest.mark.parametrize("kernel", ["craig", "exp"])
def test_numpy_select_many_equals_one_block_at_a_time(kernel):
  """The stacked greedy (blocks of different sizes and budgets, padded to the largest) picks
  and weighs every block exactly as numpy_select on that block alone, budget 0 included, and
  picks as the textbook greedy up to exact float64 ties (whose winner depends on the rounding of
  the distances, which differs between the two formulas and between NumPy builds)."""
  rng = np.random.default_rng(3)
  blocks = [rng.normal(size=(int(rng.integers(1, 30)), 6)) * rng.uniform(0.1, 3.0)
            for _ in range(60)]
  ks = [int(rng.integers(0, len(b) + 1)) for b in blocks]
  for block, k, (order, weights) in zip(blocks, ks, numpy_select_many(blocks, ks, kernel=kernel)):
    assert len(order) == len(weights) == k
    if k:
      expected = numpy_select(block, k, kernel=kernel)
      np.testing.assert_array_equal(order, expected[0])
      np.testing.assert_array_equal(weights, expected[1])
      sim = reference.similarity(block, kernel)
      _assert_same_greedy(block, kernel, order, reference.greedy(sim, k), 1e-12)


def test_facility_location_many_equals_one_pool_at_a_time():
  """CREST's P random subsets in one call: the same coresets and weights as P separate calls,
  on the batched path (small blocks) and the fallback (a block above small_max)."""
  rng = np.random.default_rng(4)
  pools = []
  for size in (26, 26, 13, 40):
    labels = np.repeat(np.arange(10), size)
    labels[:3] = 0  # uneven classes
    pools.append((rng.normal(size=(len(labels), 10)).astype(np.float32), labels))
  proxies, labels = [p for p, _ in pools], [y for _, y in pools]
  for small_max in (SMALL_MAX, 30):  # 30: the 40-point blocks take the per-pool fallback
    many = facility_location_many(proxies, labels, budget=64, kernel="exp", small_max=small_max)
    for (x, y), (idx, w) in zip(pools, many):
      ref_idx, ref_w = facility_location(x, y, budget=64, kernel="exp", small_max=small_max)
      np.testing.assert_array_equal(idx, ref_idx)
      np.testing.assert_array_equal(w, ref_w)
  with pytest.raises(Exception, match="budget"):
    facility_location_many(proxies, labels, budget=10_000)
