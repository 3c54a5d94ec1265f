"""SafeCLIP: the 1-D mixture recovers known components; split and schedule; per-phase LR."""

import numpy as np
import pytest

from robustdata.contrastive import optim, safeclip
from robustdata.registry import ConfigError


def _scores(seed=0, n=4000):
  rng = np.random.default_rng(seed)
  low = rng.normal(0.05, 0.05, size=int(0.7 * n))
  high = rng.normal(0.45, 0.1, size=n - len(low))
  return np.concatenate([low, high]), len(low)


def test_gmm_recovers_known_components_and_is_seeded():
  x, n_low = _scores()
  gm = safeclip.fit_gmm_1d(x, seed=0)
  np.testing.assert_allclose(gm.means, [0.05, 0.45], atol=0.01)
  np.testing.assert_allclose(np.sqrt(gm.variances), [0.05, 0.1], atol=0.01)
  np.testing.assert_allclose(gm.weights, [0.7, 0.3], atol=0.02)
  assert gm.converged
  gm2 = safeclip.fit_gmm_1d(x, seed=0)
  np.testing.assert_array_equal(gm.means, gm2.means)
  post = gm.posterior(x)
  np.testing.assert_allclose(post.sum(1), 1.0, rtol=1e-12)
  assert (post[n_low:, 1] > 0.5).mean() > 0.95 and (post[:n_low, 1] < 0.5).mean() > 0.95


def test_split_threshold_then_top_fraction_and_schedule():
  x, n_low = _scores(seed=1, n=2000)
  safe, risky, p, frac = safeclip.safe_risky_split(x, threshold=0.9, seed=0)
  assert len(safe) + len(risky) == len(x) and not set(safe) & set(risky)
  assert np.all(p[safe] >= 0.9) and np.all(p[risky] < 0.9)
  assert 0.2 < frac < 0.32 and np.mean(safe >= n_low) > 0.97
  r = safeclip.next_safe_fraction(frac)
  assert r == pytest.approx(frac + 0.01)
  safe2, _, p2, frac2 = safeclip.safe_risky_split(x, safe_fraction=r, seed=0)
  assert len(safe2) == int(np.floor(r * len(x))) and frac2 == len(safe2) / len(x)
  assert p2[safe2].min() >= np.delete(p2, safe2).max()
  assert safeclip.next_safe_fraction(0.849) == pytest.approx(0.85)
  assert safeclip.next_safe_fraction(0.85) == pytest.approx(0.85)
  for bad in (0.0, -0.1, 1.5):
    with pytest.raises(ConfigError, match="safe_fraction"):
      safeclip.safe_risky_split(x, safe_fraction=bad)


def test_phase_schedule_warms_up_decays_to_zero_and_stays():
  lr = lambda s: optim.phase_learning_rate(s, peak_lr=1e-3, warmup_steps=10, total_steps=100)
  assert lr(0) == pytest.approx(1e-4) and lr(9) == pytest.approx(1e-3)
  assert lr(10) == pytest.approx(1e-3)
  assert lr(55) == pytest.approx(5e-4, rel=1e-4)
  vals = [lr(s) for s in range(10, 140)]
  assert all(a >= b - 1e-12 for a, b in zip(vals, vals[1:]))  # Never creeps back up.
  assert lr(100) == pytest.approx(0.0, abs=1e-12) and lr(139) == pytest.approx(0.0, abs=1e-12)
