"""Bad input through the CRAIG and ordering policies: budgets, empty classes, NaN proxies."""

import ml_collections
import numpy as np
import pytest

from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.registry import ConfigError
from robustdata.selection.policies import Craig, ProxyNormOrdering

N, C = 60, 3


def _make(cls, name, num_classes=C, **fields):
  y = (np.arange(N) % C).astype(np.int32)
  train = Dataset(x=np.zeros((N, 2), np.float32), y=y, ids=np.arange(N))
  config = ml_collections.ConfigDict({"policy": {"name": name, **fields}})
  return cls(config, train, batch_size=8, seed=0, num_classes=num_classes)


def _probe(values):
  return lambda name, idx: values[idx]


@pytest.mark.parametrize("fields, match", [
    (dict(fraction=1.5), "fraction"), (dict(fraction=-0.1), "fraction"),
    (dict(lag=0), "lag"), (dict(lag=2.5), "lag"), (dict(start_epoch=-1), "start_epoch")])
def test_craig_bad_budget_and_lag(fields, match):
  with pytest.raises(ConfigError, match=match):
    _make(Craig, "craig", **fields)


def test_craig_with_an_empty_class_selects_from_the_others():
  policy = _make(Craig, "craig", num_classes=C + 2, fraction=0.25)
  proxies = np.random.default_rng(0).normal(size=(N, C + 2)).astype(np.float32)
  plan = policy.plan_epoch(PolicyContext(step=0, epoch=0, state=None, probe=_probe(proxies)))
  idx = np.concatenate([i for i, _ in plan])
  assert len(idx) == 15 and len(np.unique(idx)) == 15


@pytest.mark.parametrize("cls, name", [(Craig, "craig"), (ProxyNormOrdering, "ordering")])
def test_nan_proxies_raise(cls, name):
  policy = _make(cls, name)
  proxies = np.ones((N, C), np.float32)
  proxies[7, 1] = np.nan
  with pytest.raises(FloatingPointError, match="not finite"):
    policy.plan_epoch(PolicyContext(step=0, epoch=0, state=None, probe=_probe(proxies)))


def test_unknown_field_is_refused():
  with pytest.raises(ConfigError, match="budget"):
    _make(Craig, "craig", budget=10)
