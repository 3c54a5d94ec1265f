"""The spurious policies and the GroupDRO objective through the loop's interfaces."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.registry import ConfigError
from robustdata.spurious import objectives, policies


def _train(sizes=(300, 20, 15, 265)):
  groups = np.repeat(np.arange(4), sizes).astype(np.int32)
  n = len(groups)
  return Dataset(x=np.zeros((n, 2), np.float32), y=groups // 2, ids=np.arange(n),
                 groups=groups, spurious=groups % 2)


def _make(cls, name, train, **fields):
  config = ml_collections.ConfigDict({"policy": {"name": name, **fields}})
  return cls(config, train, batch_size=32, seed=0, num_classes=2, num_groups=4)


def _ctx(epoch):
  return PolicyContext(step=0, epoch=epoch, state=None, probe=None)


def _epoch(policy, epoch):
  ctx = _ctx(epoch)
  return np.concatenate([policy.next_batch(ctx)[0] for _ in range(policy.steps_for(ctx))])


def test_pde_policy_warmup_expansion_and_resume():
  train = _train()
  policy = _make(policies.ProgressiveDataExpansion, "pde", train, add_start=2, add_interval=2,
                 add_num=25)
  sizes = []
  for epoch in range(7):
    idx = _epoch(policy, epoch)
    sizes.append(len(idx))
    assert len(np.unique(idx)) == len(idx)
    if epoch == 0:
      np.testing.assert_array_equal(np.bincount(train.groups[idx], minlength=4), [15] * 4)
  state = policy.state_dict()
  assert sizes == [60, 60, 85, 85, 110, 110, 135]
  resumed = _make(policies.ProgressiveDataExpansion, "pde", train, add_start=2, add_interval=2,
                  add_num=25)
  resumed.load_state_dict(state)
  for epoch in (7, 8):  # 8 is a milestone: the same examples are added
    np.testing.assert_array_equal(_epoch(policy, epoch), _epoch(resumed, epoch))


def test_group_balanced_and_sampling_policies():
  train = _train()
  gb = _make(policies.GroupBalanced, "group_balanced", train)
  idx = np.concatenate([_epoch(gb, e) for e in range(5)])
  frac = np.bincount(train.groups[idx], minlength=4) / len(idx)
  np.testing.assert_allclose(frac, [0.25] * 4, atol=0.04)
  up = _epoch(_make(policies.UpSample, "upsample", train), 0)
  np.testing.assert_array_equal(np.bincount(train.groups[up], minlength=4), [300] * 4)
  down = _epoch(_make(policies.DownSample, "downsample", train), 0)
  np.testing.assert_array_equal(np.bincount(train.groups[down], minlength=4), [15] * 4)
  with pytest.raises(ConfigError, match="config.policy"):
    _make(policies.UpSample, "upsample", train, bogus=1)


def test_groupdro_objective_jits_and_updates():
  config = ml_collections.ConfigDict({"groupdro": {"step_size": 0.5}})
  objective = objectives.GroupDRO(config, num_groups=2)
  state = objective.init()
  batch = {"groups": jnp.array([0, 0, 1, 1]), "mask": jnp.array([1.0, 1.0, 1.0, 0.0]),
           "weight": jnp.ones(4)}
  losses = jnp.array([1.0, 1.0, 2.0, 5.0])
  coef, state, metrics = jax.jit(objective.coefficients)(losses, batch, state)
  raw = np.array([0.5 * np.exp(0.5), 0.5 * np.exp(1.0)])
  q = raw / raw.sum()
  np.testing.assert_allclose(state["q"], q, rtol=1e-6)
  assert float(jnp.sum(coef * losses) / 3) == pytest.approx(q[0] * 1.0 + q[1] * 2.0, rel=1e-6)
  assert float(coef[3]) == 0.0
