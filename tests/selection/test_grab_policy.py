"""GraB and fixed-order policies on a fake probe: GraB's orders against a float64 NumPy greedy
sign balancing, batch-by-batch balancing against the whole-epoch kernel, bitwise resume
mid-epoch, the fixed order, the ordering/digits variants."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata import config_lib, validation
from robustdata.data.dataset import Dataset
from robustdata.registry import ConfigError
from robustdata.selection import ordering_convex as oc
from robustdata.selection.grab import GraB
from robustdata.selection.policies import FixedOrder, classes_per_batch
from tests.conftest import sigint_after
from robustdata.data.policies import PolicyContext, to_json

N, C, B = 103, 4, 10  # the last batch of an epoch is short (3 examples)


def _policy(name: str, **fields):
  rng = np.random.default_rng(0)
  train = Dataset(x=rng.normal(size=(N, 2)).astype(np.float32), y=np.arange(N) % C,
                  ids=np.arange(N))
  config = ml_collections.ConfigDict({"policy": {"name": name, **fields}})
  cls = {"grab": GraB, "fixed_order": FixedOrder}[name]
  return cls(config, train, batch_size=B, seed=3, num_classes=C)


def _proxies(step: int, indices: np.ndarray) -> np.ndarray:
  """Float32 proxies that change with the step, as the model's do while it trains."""
  base = np.random.default_rng(7).normal(size=(N, C))
  drift = np.random.default_rng(100 + step).normal(size=C) * 0.3
  return (base[indices] * (1.0 + 0.05 * step) + drift).astype(np.float32)


def _run(policy, epochs: range, step: int = 0, plans=None, stop_at=None):
  """Serves `epochs` of the policy as the loop does; returns (plans by epoch, steps done)."""
  plans = {} if plans is None else plans
  for epoch in epochs:
    ctx = lambda s, e=epoch: PolicyContext(step=s, epoch=e, state=None,
                                            probe=lambda kind, idx: _proxies(s, idx))
    steps = policy.steps_for(ctx(step))
    plans[epoch] = [policy.plan_indices[i].copy() for i in range(steps)]
    for _ in range(policy.position, steps):
      if step == stop_at:
        return plans, step
      policy.next_batch(ctx(step))
      step += 1
  return plans, step


def _balance64(visits: np.ndarray, proxies: np.ndarray, mean: np.ndarray) -> np.ndarray:
  """Greedy sign balancing in float64: + signs fill the order from the front, - from the back."""
  s, left, right, out = np.zeros(proxies.shape[1]), 0, len(visits) - 1, np.full(len(visits), -1)
  for i, g in zip(visits, proxies):
    c = g - mean
    if np.linalg.norm(s + c) <= np.linalg.norm(s - c):
      out[left], left, s = i, left + 1, s + c
    else:
      out[right], right, s = i, right - 1, s - c
  return out


def test_grab_orders_equal_float64_greedy_balancing_of_the_visited_proxies():
  policy = _policy("grab")
  plans, _ = _run(policy, range(4))
  mean, step = np.zeros(C), 0
  for epoch in range(3):
    order = np.concatenate(plans[epoch])
    assert sorted(order.tolist()) == list(range(N))
    assert all(len(b) == B for b in plans[epoch][:-1]) and len(plans[epoch][-1]) == N % B
    seen = np.concatenate([_proxies(step + k, b).astype(np.float64)
                           for k, b in enumerate(plans[epoch])])
    step += len(plans[epoch])
    np.testing.assert_array_equal(np.concatenate(plans[epoch + 1]),
                                  _balance64(order, seen, mean))
    mean = seen.mean(axis=0)  # the next epoch's stale mean
  assert policy.examples_probed == 4 * N
  assert policy.results()["classes_per_batch"] == classes_per_batch(plans[3], np.arange(N) % C)


def test_balancing_batch_by_batch_equals_the_whole_epoch_kernel():
  rng = np.random.default_rng(1)
  grads, order, mean = rng.normal(size=(23, 5)), rng.permutation(23), rng.normal(size=5) * 0.1
  with jax.enable_x64(True):
    whole = oc.grab_order(jnp.asarray(grads), jnp.asarray(order, jnp.int32), jnp.asarray(mean))
    carry = oc.grab_start(23, jnp.asarray(mean))
    for s in range(0, 23, 7):
      carry = oc.grab_balance(carry, jnp.asarray(grads[s:s + 7]),
                              jnp.asarray(order[s:s + 7], jnp.int32), jnp.asarray(mean))
  np.testing.assert_array_equal(np.asarray(carry[3]), np.asarray(whole))
  np.testing.assert_array_equal(np.asarray(whole), _balance64(order, grads, mean))


@pytest.mark.parametrize("name", ["grab", "fixed_order"])
def test_resume_mid_epoch_gives_identical_plans(name):
  policy = _policy(name)
  plans, step = _run(policy, range(3), stop_at=16)  # killed in epoch 1
  snapshot = json.loads(json.dumps(to_json(policy.state_dict())))
  resumed = _policy(name)
  resumed.load_state_dict(snapshot)
  again, _ = _run(resumed, range(1, 4), step=step, plans=dict(plans))
  full, _ = _run(_policy(name), range(4))
  for epoch in range(4):
    for a, b in zip(again[epoch], full[epoch], strict=True):
      np.testing.assert_array_equal(a, b)
  if name == "fixed_order":  # one permutation, every epoch
    assert all(np.array_equal(np.concatenate(full[e]), np.concatenate(full[0])) for e in full)
    assert sorted(np.concatenate(full[0]).tolist()) == list(range(N))


def test_classes_per_batch_against_counting():
  labels = np.array([0, 0, 1, 2, 2, 2, 3])
  assert classes_per_batch([np.array([0, 1]), np.array([2, 3, 6]), np.array([4, 5])],
                           labels) == pytest.approx((1 + 3 + 1) / 3)
  assert np.isnan(classes_per_batch([], labels))


def test_ordering_digits_variants():
  from configs.ordering import digits  # pylint: disable=g-import-not-at-top
  for arg, policy, schedule in [("grab", "grab", "constant"), ("fixed", "fixed_order", "constant"),
                                ("grab,linear,decreasing", "grab", "cosine"),
                                ("random,decreasing", "full", "cosine"),
                                ("fixed,decreasing,smoke", "fixed_order", "cosine")]:
    config = config_lib.with_defaults(digits.get_config(arg))
    assert (config.policy.name, config.optim.schedule) == (policy, schedule), arg
    assert bool(config.policy.get("use_linear")) == ("linear" in arg), arg
    assert validation.range_errors(config) == []
    config_lib.validate(config, num_devices=1)
  for bad in ("grab,fixed", "grab,descending", "fixed,examples", "random,grab", "fixed,linear"):
    with pytest.raises(ConfigError, match="variant"):
      digits.get_config(bad)


@pytest.mark.slow
def test_killed_grab_run_resumes_to_the_same_results(tmp_path):
  """A tiny-MLP GraB run interrupted in epoch 0 (the stop checkpoints step 20 of 26, carrying
  the half-balanced order of epoch 1) and resumed ends with the uninterrupted run's numbers."""
  from configs.ordering import digits  # pylint: disable=g-import-not-at-top
  from robustdata import runner  # pylint: disable=g-import-not-at-top
  from robustdata.train import driver  # pylint: disable=g-import-not-at-top
  config = digits.get_config("grab,smoke")
  with config.unlocked():
    config.model.name, config.model.hidden = "mlp", (32,)
    config.train.progress, config.train.epochs = "none", 2
    config.train.checkpoint_every_steps = 1000
  _, full = runner.run(config, str(tmp_path / "a"))
  with pytest.MonkeyPatch.context() as patch:
    sigint_after(patch, 20)
    with pytest.raises(driver.Interrupted, match="at step 20"):
      runner.run(config, str(tmp_path / "b"))
  _, resumed = runner.run(config, str(tmp_path / "b"))
  for key in ("test_accuracy", "test_loss", "steps", "examples_seen", "examples_probed",
              "classes_per_batch"):
    assert full[key] == resumed[key], key
