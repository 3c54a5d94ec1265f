"""RoCLIP pool: FIFO semantics against a Python model, nearest-neighbour lookup by brute force."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from robustdata.contrastive import pool as pool_lib
from robustdata.registry import ConfigError


def _py_fifo(size, batches, drop_overflow):
  """Reference ring buffer: list of rows, ptr, filled."""
  rows, ptr, filled = [None] * size, 0, 0
  for b in batches:
    if drop_overflow:
      take = min(len(b), size - ptr)
      for i in range(take):
        rows[ptr + i] = b[i]
      filled = min(filled + take, size)
      ptr = 0 if ptr + len(b) >= size else ptr + len(b)
    else:
      for r in b:
        rows[ptr] = r
        ptr = (ptr + 1) % size
      filled = min(filled + len(b), size)
  return rows, ptr, filled


@pytest.mark.parametrize("drop_overflow", [False, True])
def test_enqueue_matches_python_fifo(drop_overflow):
  rng = np.random.default_rng(0)
  size, d = 10, 3
  batches = [rng.standard_normal((b, d)).astype(np.float32) for b in (4, 4, 3, 4, 2, 4)]
  p = pool_lib.init_pool(size, d, batch_size=4)
  enqueue = jax.jit(lambda p, b: pool_lib.enqueue(p, b, drop_overflow=drop_overflow))
  for i, b in enumerate(batches):
    p = enqueue(p, jnp.asarray(b))
    rows, ptr, filled = _py_fifo(size, batches[: i + 1], drop_overflow)
    assert int(p.ptr) == ptr and int(p.filled) == filled
    for j in range(filled):
      np.testing.assert_array_equal(np.asarray(p.embeddings[j]), rows[j])


def test_enqueue_mask_skips_padding_rows():
  p = pool_lib.init_pool(6, 2, batch_size=4)
  b = jnp.arange(8, dtype=jnp.float32).reshape(4, 2)
  p = pool_lib.enqueue(p, b, mask=jnp.array([1, 0, 1, 0]))
  assert int(p.ptr) == 2 and int(p.filled) == 2
  np.testing.assert_array_equal(np.asarray(p.embeddings[:2]), np.asarray(b[jnp.array([0, 2])]))


def test_nearest_matches_brute_force_and_ignores_unfilled_rows():
  rng = np.random.default_rng(1)
  emb = rng.standard_normal((50, 8)).astype(np.float32)
  p = pool_lib.init_pool(64, 8, prefill=jnp.asarray(emb), batch_size=16)
  assert int(p.filled) == 50 and int(p.ptr) == 50
  q = rng.standard_normal((16, 8)).astype(np.float32)
  idx, rows = pool_lib.nearest(p, jnp.asarray(q))
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  brute = np.argmax(unit(q.astype(np.float64)) @ unit(emb.astype(np.float64)).T, axis=1)
  np.testing.assert_array_equal(np.asarray(idx), brute)
  np.testing.assert_allclose(np.asarray(rows), unit(emb)[brute], rtol=1e-6)


def test_match_looks_up_before_enqueue_and_stops_gradient():
  rng = np.random.default_rng(2)
  p = pool_lib.init_pool(8, 4, prefill=jnp.asarray(rng.standard_normal((8, 4)), jnp.float32),
                         batch_size=4)
  img = jnp.asarray(rng.standard_normal((4, 4)), jnp.float32)
  matched, p2 = pool_lib.match_and_enqueue(p, img, img)  # Captions equal to the queries.
  _, expect = pool_lib.nearest(p, img)
  np.testing.assert_array_equal(np.asarray(matched), np.asarray(expect))
  assert int(p2.ptr) == 4
  grad = jax.grad(lambda x: pool_lib.nearest(p, x)[1].sum())(img)
  assert float(jnp.abs(grad).max()) == 0.0


def test_prefill_random_reproduces_reference_and_errors_name_fields():
  p = pool_lib.init_pool(32, 16, prefill_random=True, key=jax.random.PRNGKey(0), batch_size=8)
  assert int(p.filled) == 32
  assert float(jnp.linalg.norm(p.embeddings, axis=1).mean()) > 2.0  # Not normalised.
  with pytest.raises(ConfigError, match="pool_size"):
    pool_lib.init_pool(4, 3, batch_size=8)
  with pytest.raises(ConfigError, match="break_epoch"):
    pool_lib.is_matching_epoch(3, break_epoch=0)
  assert [e for e in range(1, 7) if pool_lib.is_matching_epoch(e, break_epoch=2)] == [2, 4, 6]
