"""CRAIG and ordering policies on a fake probe: plans, reselection lag, resume, bad config."""

import ml_collections
import numpy as np
import pytest

from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.registry import ConfigError
from robustdata.selection import facility_location, normalize_weights
from robustdata.selection.policies import Craig, ProxyNormOrdering

N, C = 120, 3


def _setup(name, **fields):
  rng = np.random.default_rng(0)
  y = np.arange(N) % C
  train = Dataset(x=rng.normal(size=(N, 2)).astype(np.float32), y=y, ids=np.arange(N))
  config = ml_collections.ConfigDict({"policy": {"name": name, **fields}})
  proxies = rng.normal(size=(N, C)).astype(np.float32)
  calls = []

  def probe(kind, indices):
    calls.append(kind)
    return proxies[indices]

  return train, config, proxies, probe, calls


def _ctx(epoch, probe):
  return PolicyContext(step=0, epoch=epoch, state=None, probe=probe)


def test_craig_plans_weighted_coreset_and_respects_lag():
  train, config, proxies, probe, calls = _setup("craig", fraction=0.25, lag=2)
  policy = Craig(config, train, batch_size=8, seed=0, num_classes=C)
  plan = policy.plan_epoch(_ctx(0, probe))
  idx = np.concatenate([i for i, _ in plan])
  w = np.concatenate([w for _, w in plan])
  ref_idx, ref_w = facility_location(proxies, train.y, budget=30)
  order = np.argsort(ref_idx)
  np.testing.assert_array_equal(np.sort(idx), ref_idx[order])
  np.testing.assert_allclose(w[np.argsort(idx)], normalize_weights(ref_w)[order])
  assert all(len(i) <= 8 for i, _ in plan) and abs(w.mean() - 1) < 1e-6
  policy.plan_epoch(_ctx(1, probe))
  assert calls == ["proxy"]  # epoch 1 reuses the epoch-0 coreset (lag 2)
  policy.plan_epoch(_ctx(2, probe))
  assert calls == ["proxy", "proxy"]
  state = policy.state_dict()
  again = Craig(config, train, batch_size=8, seed=0, num_classes=C)
  again.load_state_dict(state)
  a, b = policy.plan_epoch(_ctx(3, probe)), again.plan_epoch(_ctx(3, probe))
  for (ia, wa), (ib, wb) in zip(a, b):
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(wa, wb)


def test_craig_reselects_into_its_similarity_workspace():
  """With a dense greedy, CRAIG (on CPU) keeps the last class block's similarity and builds the
  next reselection's into it; the coresets equal fresh selections'."""
  train, config, proxies, probe, _ = _setup("craig", fraction=0.25, method="lazy_dense")
  policy = Craig(config, train, batch_size=8, seed=0, num_classes=C)
  for epoch in range(2):
    policy.plan_epoch(_ctx(epoch, probe))
    expected, weights = facility_location(proxies, train.y, budget=30, method="lazy_dense")
    np.testing.assert_array_equal(policy.subset, expected)
    np.testing.assert_allclose(policy.subset_weights, normalize_weights(weights))
    assert policy.workspace.nbytes == 64 * 64 * 4  # 40 points per class, padded to 64
    proxies += np.random.default_rng(epoch).normal(size=proxies.shape).astype(np.float32)


@pytest.mark.parametrize("field, value", [("lag", 0), ("lag", -1), ("fraction", 0.0)])
def test_craig_bad_config(field, value):
  train, config, _, _, _ = _setup("craig", **{field: value})
  with pytest.raises(ConfigError, match=field):
    Craig(config, train, batch_size=8, seed=0, num_classes=C)


@pytest.mark.parametrize("ascending", [True, False])
def test_ordering_sorts_by_proxy_norm(ascending):
  train, config, proxies, probe, _ = _setup("ordering", ascending=ascending)
  policy = ProxyNormOrdering(config, train, batch_size=16, seed=0, num_classes=C)
  plan = policy.plan_epoch(_ctx(0, probe))
  order = np.concatenate([i for i, _ in plan])
  norms = np.linalg.norm(proxies, axis=1)[order]
  assert sorted(order.tolist()) == list(range(N))
  assert np.all(np.diff(norms) >= 0) if ascending else np.all(np.diff(norms) <= 0)


@pytest.mark.parametrize("ascending", [True, False])
def test_ordering_of_random_batches_by_block_gradient_norm(ascending):
  train, config, proxies, probe, _ = _setup("ordering", ascending=ascending, blocks="batches")
  policy = ProxyNormOrdering(config, train, batch_size=16, seed=0, num_classes=C)
  plan = policy.plan_epoch(_ctx(0, probe))
  order = np.concatenate([i for i, _ in plan])
  assert sorted(order.tolist()) == list(range(N)) and len(plan) == -(-N // 16)
  block_norms = [np.linalg.norm(proxies[i].astype(np.float64).mean(axis=0)) for i, _ in plan]
  assert np.all(np.diff(block_norms) >= 0) if ascending else np.all(np.diff(block_norms) <= 0)
  # Batches are random draws, not runs of sorted examples: the next epoch regroups them.
  again = {tuple(sorted(i.tolist())) for i, _ in policy.plan_epoch(_ctx(1, probe))}
  assert again != {tuple(sorted(i.tolist())) for i, _ in plan}


def test_ordering_bad_blocks():
  train, config, _, _, _ = _setup("ordering", blocks="classes")
  with pytest.raises(ConfigError, match="config.policy.blocks"):
    ProxyNormOrdering(config, train, batch_size=16, seed=0, num_classes=C)
