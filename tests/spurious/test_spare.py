"""SPARE training (issue 25): the sampling probabilities follow |group|^(-power) per class
(against a direct NumPy loop), the policy's draws follow them (chi-square, fixed seed), it
reads a SPARE inference stage's per-class powers, and the smoke chain of
configs/spuco/spare_digits.py runs."""

import json
import os

import ml_collections
import numpy as np
import pytest
from scipy import stats

from robustdata import runner
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.registry import ConfigError
from robustdata.spurious import group_source, policies, spare


def _direct(labels, groups, powers):
  """p_i by the definition, one example at a time: |{j: y_j = y_i, g_j = g_i}|^-power_(y_i),
  divided by its class's total and by the number of classes present."""
  n = len(labels)
  w = np.array([float(np.sum((labels == labels[i]) & (groups == groups[i]))) ** -powers[labels[i]]
                for i in range(n)])
  classes = sorted(set(labels.tolist()))
  out = np.zeros(n)
  for i in range(n):
    out[i] = w[i] / w[labels == labels[i]].sum() / len(classes)
  return out


def _data(seed=0, n=90):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 3, n)
  # Group sizes within each class from very unequal to equal; one group spans two classes.
  g = np.where(rng.random(n) < 0.8, 2 * y, 2 * y + 1)
  g[(y == 2) & (rng.random(n) < 0.3)] = 0
  return y.astype(np.int32), g.astype(np.int32)


@pytest.mark.parametrize("powers", [(1.0, 1.0, 1.0), (2.0, 0.0, 0.5), (0.0, 0.0, 0.0)])
def test_probabilities_follow_the_formula(powers):
  y, g = _data()
  p = spare.sampling_probabilities(y, g, np.array(powers))
  np.testing.assert_allclose(p, _direct(y, g, np.array(powers)), rtol=1e-12)
  assert p.sum() == pytest.approx(1.0)
  for c in range(3):  # each class has the same total
    assert p[y == c].sum() == pytest.approx(1 / 3)


def _policy(y, g, *, extras=None, **fields):
  config = ml_collections.ConfigDict({"policy": {"name": "spare", **fields},
                                      "train": {"epochs": 2}})
  train = Dataset(x=np.zeros((len(y), 2), np.float32), y=y, ids=np.arange(len(y)), groups=g,
                  extras=extras or {})
  return policies.SpareSampling(config, train, batch_size=16, seed=3, num_classes=3,
                                num_groups=int(g.max()) + 1)


def test_sampled_frequencies_match_the_probabilities():
  y, g = _data()
  policy = _policy(y, g, sampling_power=2.0)
  expected = spare.sampling_probabilities(y, g, np.full(3, 2.0))
  counts = np.zeros(len(y))
  epochs = 400
  for epoch in range(epochs):
    ctx = PolicyContext(step=0, epoch=epoch, state=None, probe=None)
    steps = policy.steps_for(ctx)
    assert steps == policy.expected_steps_per_epoch() == -(-len(y) // 16)
    for _ in range(steps):
      idx, w = policy.next_batch(ctx)
      np.testing.assert_array_equal(w, 1.0)
      counts += np.bincount(idx, minlength=len(y))
  total = epochs * len(y)
  assert counts.sum() == total
  chi2 = float(np.sum((counts - total * expected) ** 2 / (total * expected)))
  # Under the null the statistic is chi-square with N - 1 degrees of freedom; the seed is
  # fixed, so this is a deterministic check at the 0.999 quantile.
  assert chi2 < stats.chi2.ppf(0.999, len(y) - 1), chi2


def test_policy_reads_the_inferred_powers():
  y, g = _data()
  per_class = np.array([2.0, 1.0, 0.5])
  extras = {group_source.SAMPLING_POWER: per_class[y]}
  policy = _policy(y, g, extras=extras, sampling_power=1.0)
  np.testing.assert_allclose(policy.probabilities, _direct(y, g, per_class), rtol=1e-12)
  assert policy.results() == {"spare_sampling_powers": per_class.tolist()}
  ignored = _policy(y, g, extras=extras, sampling_power=1.0, inferred_powers=False)
  np.testing.assert_allclose(ignored.probabilities, _direct(y, g, np.ones(3)), rtol=1e-12)


def test_bad_power_is_a_clear_error():
  y, g = _data()
  with pytest.raises(ConfigError, match=r"config.policy.sampling_power=-1.0 must be"):
    _policy(y, g, sampling_power=-1.0)
  with pytest.raises(ConfigError, match=r"config.policy.power is not a field"):
    _policy(y, g, power=2.0)


@pytest.mark.slow
def test_spare_smoke_chain(tmp_path):
  """Reference -> SPARE inference -> SPARE training (configs/spuco/spare_digits.py:smoke); the
  training run samples with the powers the inference stage wrote."""
  from configs.spuco import spare_digits  # pylint: disable=g-import-not-at-top
  config = spare_digits.get_config("smoke")
  run_dir, results = runner.run(config, str(tmp_path))
  with open(os.path.join(runner.stage_dir(config, "group_stage", run_dir), "results.json")) as f:
    inferred = json.load(f)
  assert inferred["inference_method"] == "spare"
  assert results["policy"] == "spare"
  assert results["spare_sampling_powers"] == inferred["inference_sampling_powers"]
  assert 0.0 <= results["worst_group_accuracy"] <= 1.0
  assert results["worst_group_accuracy"] == min(results["group_accuracy"].values())
