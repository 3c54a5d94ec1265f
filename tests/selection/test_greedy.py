"""Greedy facility location against float64 brute force, exhaustive optima and each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.selection import (SimilarityWorkspace, cluster_weights, facility_location,
                                  greedy_fl, greedy_select)
from tests.selection import reference


@pytest.mark.parametrize("kernel", ["craig", "exp"])
@pytest.mark.parametrize("method", ["dense", "lazy_dense", "lazy"])
def test_matches_brute_force_float64(kernel, method):
  """Same picks in the same order, and the same cluster-size weights, as the NumPy greedy."""
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    for n, d, k in [(250, 5, 30)]:
      x = rng.normal(size=(n, d))
      sim = reference.similarity(x, kernel)
      expected = reference.greedy(sim, k)
      # block=128 exercises several row blocks and block pairs, plus padding.
      order = greedy_select(x, k, kernel=kernel, method=method, block=128)
      np.testing.assert_array_equal(order, expected)
      np.testing.assert_array_equal(cluster_weights(x, order, kernel=kernel, block=128),
                                    reference.cluster_sizes(sim, expected))


def test_greedy_fl_weighted_rows_float64():
  """The low-level dense greedy on a given similarity with row weights and a candidate mask."""
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    x = rng.normal(size=(200, 4))
    sim = reference.similarity(x, "exp")
    w = rng.integers(1, 5, size=200).astype(np.float64)
    order, gains = greedy_fl(jnp.asarray(sim), 25, jnp.asarray(w), block=16)
    np.testing.assert_array_equal(np.asarray(order), reference.greedy(sim, 25, w))
    assert np.all(np.diff(np.asarray(gains)) <= 1e-12)  # marginal gains never increase


@pytest.mark.parametrize("kernel", ["craig", "exp"])
def test_approximation_guarantee(kernel):
  """F(greedy) >= (1 - 1/e) F(optimum) on small exhaustive cases (clustered points)."""
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    for trial in range(4):
      x = np.concatenate([rng.normal(size=(4, 2)) + 3 * rng.normal(size=2) for _ in range(3)])
      sim = reference.similarity(x, kernel)
      for k in (2, 3):
        order = greedy_select(x, k, kernel=kernel, method="lazy")
        assert reference.value(sim, order) >= (1 - 1 / np.e) * reference.optimum(sim, k) - 1e-9


@pytest.mark.parametrize("kernel", ["craig", "exp"])
@pytest.mark.parametrize("method", ["lazy_dense", "lazy"])
def test_lazy_loops_record_cluster_sizes(kernel, method):
  """The lazy greedies' weights (each point's most similar pick, recorded as the coverage rises)
  equal the brute-force cluster sizes in float64 and the separate distance pass in float32."""
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    x = rng.normal(size=(300, 6))
    sim = reference.similarity(x, kernel)
    order, weights = facility_location(x, np.zeros(300, np.int64), budget=40, kernel=kernel,
                                       method=method, block=128)
    np.testing.assert_array_equal(order, reference.greedy(sim, 40))
    np.testing.assert_array_equal(weights, reference.cluster_sizes(sim, order))
  x = rng.normal(size=(1500, 8)).astype(np.float32)
  order, weights = facility_location(x, np.zeros(1500, np.int64), budget=150, kernel=kernel,
                                     method=method)
  np.testing.assert_array_equal(weights, cluster_weights(x, order, kernel=kernel))
  assert weights.sum() == 1500


def test_uncovered_point_falls_back_to_distances():
  """With the CRAIG kernel's exact M the farthest point has similarity 0 to the pick, so the
  greedy never records it; its weight comes from the nearest-medoid pass instead."""
  x = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)
  for method in ("lazy", "lazy_dense"):
    _, weights = facility_location(x, np.zeros(2, np.int64), budget=1, method=method)
    np.testing.assert_array_equal(weights, [2.0])


@pytest.mark.parametrize("method", ["dense", "lazy_dense"])
def test_workspace_reuses_the_similarity_memory(method):
  """With a SimilarityWorkspace the next selection of the same padded size builds its matrix in
  the previous one's memory (donated) and selects exactly what a call without it selects; a
  selection of another size replaces the held matrix."""
  rng = np.random.default_rng(5)
  labels = np.zeros(700, np.int64)
  workspace = SimilarityWorkspace()
  x = rng.normal(size=(700, 40)).astype(np.float32)
  facility_location(x, labels, budget=60, method=method, block=256, workspace=workspace)
  held = workspace.take((768, 768), np.float32)  # 700 rows padded to a multiple of 256
  assert held is not None
  address = held.unsafe_buffer_pointer()
  workspace.keep(held)
  del held
  x2 = rng.normal(size=(700, 40)).astype(np.float32)
  reused = facility_location(x2, labels, budget=60, method=method, block=256,
                             workspace=workspace)
  fresh = facility_location(x2, labels, budget=60, method=method, block=256)
  np.testing.assert_array_equal(reused[0], fresh[0])
  np.testing.assert_array_equal(reused[1], fresh[1])
  held = workspace.take((768, 768), np.float32)
  assert held.unsafe_buffer_pointer() == address
  workspace.keep(held)
  facility_location(x2[:300], labels[:300], budget=30, method=method, block=256,
                    workspace=workspace)
  assert workspace.nbytes == 512 * 512 * 4
  workspace.clear()
  assert workspace.nbytes == 0
