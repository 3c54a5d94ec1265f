"""The augmentation-coreset policy on a fake probe: M ∪ A plans, slot rows, refresh, resume."""

import json

import ml_collections
import numpy as np
import pytest

from robustdata.data import strong_augment
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext, to_json
from robustdata.registry import ConfigError
from robustdata.selection.augment_coreset import AugmentCoreset
from robustdata.selection.facility_location import facility_location

N, C = 90, 3


def _setup(**fields):
  rng = np.random.default_rng(0)
  train = Dataset(x=rng.uniform(size=(N, 6, 6, 1)).astype(np.float32),
                  y=(np.arange(N) % C).astype(np.int32), ids=np.arange(N))
  proxies = rng.normal(size=(N, C)).astype(np.float32)
  config = ml_collections.ConfigDict({"policy": {"name": "augment_coreset", "fraction": 0.2,
                                                 "refresh_every": 2, **fields}})
  calls = []

  def probe(name, idx):
    calls.append(name)
    assert np.max(idx) < N  # probes never see slot rows
    return proxies[idx]

  policy = AugmentCoreset(config, train, batch_size=16, seed=0, num_classes=C)
  return policy, train, proxies, probe, calls


def _ctx(epoch, probe):
  return PolicyContext(step=0, epoch=epoch, state=None, probe=probe)


def _rows(plan):
  return np.concatenate([i for i, _ in plan]), np.concatenate([w for _, w in plan])


def test_plan_is_full_data_plus_strongly_augmented_coreset():
  policy, train, proxies, probe, calls = _setup()
  x0 = train.x.copy()
  rows, weights = _rows(policy.plan_epoch(_ctx(0, probe)))
  ref, _ = facility_location(proxies, train.y[:N], budget=18, kernel="exp")
  assert len(train) == N + len(ref)
  np.testing.assert_array_equal(np.sort(rows[rows < N]), np.arange(N))
  np.testing.assert_array_equal(np.sort(rows[rows >= N]), N + np.arange(len(ref)))
  np.testing.assert_array_equal(np.sort(policy.augmented), np.sort(ref))
  np.testing.assert_array_equal(train.y[N:], train.y[policy.augmented])
  np.testing.assert_array_equal(train.x[:N], x0)  # the real rows are untouched
  key = __import__("jax").random.PRNGKey(policy.aug_seed)
  expected = strong_augment.rand_augment(__import__("jax").random.fold_in(
      __import__("jax").random.fold_in(key, 0), 0), x0[policy.augmented], num_ops=2,
      magnitude=0.5)
  np.testing.assert_allclose(train.x[N:], np.asarray(expected))
  assert np.all(weights == 1.0)
  policy.plan_epoch(_ctx(1, probe))
  assert calls == ["proxy"]       # refresh every 2 epochs
  policy.plan_epoch(_ctx(2, probe))
  assert calls == ["proxy", "proxy"]


@pytest.mark.parametrize("selection, main", [("random", "full"), ("full", "none"),
                                             ("coreset", "coreset"), ("coreset", "random")])
def test_variants(selection, main):
  policy, train, _, probe, _ = _setup(selection=selection, main=main)
  rows, weights = _rows(policy.plan_epoch(_ctx(0, probe)))
  k = N if selection == "full" else len(policy.augmented)
  assert np.sum(rows >= N) == k
  main_size = {"full": N, "none": 0, "coreset": k, "random": k}[main]
  assert np.sum(rows < N) == main_size
  if main == "coreset":
    assert abs(weights[rows < N].mean() - 1.0) < 1e-5


def test_resume_rewrites_slots_and_plans():
  policy, train, _, probe, _ = _setup()
  policy.plan_epoch(_ctx(0, probe))
  policy.next_batch(_ctx(0, probe))
  snapshot = json.loads(json.dumps(to_json(policy.state_dict())))
  slots = train.x[N:].copy()
  other, train2, _, probe2, _ = _setup()
  other.load_state_dict(snapshot)
  np.testing.assert_array_equal(train2.x[N:], slots)
  for epoch in (0, 1, 2):
    if epoch:
      a, b = policy.plan_epoch(_ctx(epoch, probe)), other.plan_epoch(_ctx(epoch, probe2))
      for (ia, wa), (ib, wb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(wa, wb)
      np.testing.assert_array_equal(train.x, train2.x)


@pytest.mark.parametrize("fields, match", [
    (dict(fraction=0.0), "fraction"), (dict(fraction=1.5), "fraction"),
    (dict(refresh_every=0), "refresh_every"), (dict(selection="maxloss"), "selection"),
    (dict(main="coreset", selection="random"), "main"), (dict(num_ops=0), "num_ops")])
def test_bad_config(fields, match):
  with pytest.raises(ConfigError, match=match):
    _setup(**fields)


def test_nan_proxies():
  policy, _, _, _, _ = _setup()
  with pytest.raises(FloatingPointError, match="not finite"):
    policy.plan_epoch(_ctx(0, lambda name, idx: np.full((len(idx), C), np.nan)))
