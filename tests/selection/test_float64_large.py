"""float64 blocked passes at n = 17,500, where a fused n x n float64 max-reduction on XLA:CPU
was seen to return a wrong value; the row-blocked passes must agree with NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from robustdata.selection import similarity


@pytest.mark.slow
def test_float64_passes_match_numpy_at_17500():
  n, d, block = 17_500, 3, 2048
  x = np.random.default_rng(0).normal(size=(n, d))
  x -= x.mean(axis=0)
  max_d, col_sum, sim_sum = 0.0, np.zeros(n), np.zeros(n)
  for a in range(0, n, 2500):  # float64 reference from explicit differences, in row chunks
    dist = cdist(x[a:a + 2500], x)  # sqrt(sum((u - v)**2)), as NumPy's broadcast form, 3x faster
    max_d = max(max_d, dist.max())
    col_sum += dist.sum(0)
    sim_sum += np.exp(-dist / d).sum(0)
  with jax.enable_x64(True):
    padded, valid = similarity.pad_rows(x, block)
    xp, vp = jnp.asarray(padded), jnp.asarray(valid)
    w = jnp.asarray(valid.astype(np.float64))
    assert xp.dtype == jnp.float64
    gains, m = similarity.initial_gains(xp, w, vp, kernel="craig", block=block, dim=d)
    np.testing.assert_allclose(float(m), max_d, rtol=1e-12)
    np.testing.assert_allclose(float(similarity.max_distance(xp, vp, block=block)), max_d,
                               rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gains)[:n], n * max_d - col_sum, rtol=1e-9)
    gains_exp, _ = similarity.initial_gains(xp, w, vp, kernel="exp", block=block, dim=d)
    np.testing.assert_allclose(np.asarray(gains_exp)[:n], sim_sum, rtol=1e-9)
    assert np.all(np.isneginf(np.asarray(gains)[n:]))
