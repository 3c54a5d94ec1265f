"""Issue 5's methods end to end through `runner.run` on the smoke variants of their configs,
plus JTT's stage switch and the configuration errors of group methods on data without groups."""

import importlib
import json
import os

import ml_collections
import numpy as np
import pytest

from robustdata import runner
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.registry import ConfigError
from robustdata.spurious import dfr as dfr_lib
from robustdata.spurious import policies

SPUCO_METHODS = ("erm", "upsample", "groupdro", "jtt", "dfr", "pde")


def _smoke(module: str, **overrides):
  config = importlib.import_module(module).get_config("smoke")
  with config.unlocked():
    for dotted, value in overrides.items():
      section, _, field = dotted.rpartition(".")
      (config[section] if section else config)[field] = value
  return config


def _read_results(run_dir: str) -> dict:
  with open(os.path.join(run_dir, "results.json")) as f:
    return json.load(f)


@pytest.mark.parametrize("policy_name,method", [("group_balanced", "erm"), ("upsample", "erm"),
                                                ("pde", "erm"), ("full", "groupdro"),
                                                ("full", "dfr")])
def test_group_methods_on_data_without_groups_name_the_field(tiny_config, tmp_path, policy_name,
                                                             method):
  config = tiny_config(method=method)
  config.policy.name = policy_name
  field = "config.policy.name" if policy_name != "full" else "config.method"
  with pytest.raises(ConfigError, match=field) as err:
    runner.run(config, str(tmp_path))
  assert "group" in str(err.value)
  if policy_name != "full":
    assert "config.data.name='digits'" in str(err.value)


def test_full_batch_needs_a_batch_as_large_as_train(tiny_config, tmp_path):
  config = tiny_config()
  config.policy.name = "full_batch"
  with pytest.raises(ConfigError, match="config.train.batch_size=64"):
    runner.run(config, str(tmp_path))


def _jtt(**fields):
  y = np.repeat([0, 1], 50).astype(np.int32)
  train = Dataset(x=np.zeros((100, 2), np.float32), y=y, ids=np.arange(100),
                  groups=y * 2 + (np.arange(100) % 10 == 0), spurious=None)
  config = ml_collections.ConfigDict({"policy": {"name": "jtt", **fields},
                                      "train": {"epochs": 4}})
  return policies.JustTrainTwice(config, train, batch_size=32, seed=0, num_classes=2,
                                 num_groups=4), train


def _epoch(policy, epoch, probe=None):
  ctx = PolicyContext(step=0, epoch=epoch, state=None, probe=probe)
  return [policy.next_batch(ctx) for _ in range(policy.steps_for(ctx))]


@pytest.mark.parametrize("mode", ["upsample", "upweight"])
def test_jtt_switches_stage_once_and_resumes(mode):
  policy, train = _jtt(stage1_epochs=2, upweight=3, mode=mode)
  wrong = np.arange(0, 100, 10)  # the "identification model" misclassifies these

  def probe(name, idx):
    assert name == "logits"
    logits = np.zeros((len(idx), 2))
    logits[np.arange(len(idx)), train.y[idx]] = 1.0
    logits[np.isin(idx, wrong)] = logits[np.isin(idx, wrong)][:, ::-1]
    return logits

  reinits = []
  for epoch in range(2):
    assert len(np.concatenate([i for i, _ in _epoch(policy, epoch)])) == 100
    policy.on_epoch_end(PolicyContext(step=0, epoch=epoch, state=None, probe=probe))
    reinits.append(policy.wants_reinit())
  assert reinits == [False, True] and not policy.wants_reinit()
  np.testing.assert_array_equal(policy.errors, wrong)
  assert policy.examples_probed == 100
  state = policy.state_dict()
  batches = _epoch(policy, 2)
  idx = np.concatenate([i for i, _ in batches])
  w = np.concatenate([w for _, w in batches])
  if mode == "upsample":
    assert len(idx) == 100 + 2 * len(wrong) and np.all(w == 1)
    np.testing.assert_array_equal(np.bincount(idx, minlength=100)[wrong], 3)
  else:
    assert len(idx) == 100
    np.testing.assert_array_equal(w[np.isin(idx, wrong)], 3.0)
    assert np.all(w[~np.isin(idx, wrong)] == 1.0)
  resumed, _ = _jtt(stage1_epochs=2, upweight=3, mode=mode)
  resumed.load_state_dict(state)
  for (a, wa), (b, wb) in zip(batches, _epoch(resumed, 2)):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(wa, wb)
  assert policy.results()["jtt_error_set_size"] == 10


def test_jtt_rejects_bad_fields():
  with pytest.raises(ConfigError, match="config.policy.stage1_epochs"):
    _jtt(stage1_epochs=4)
  with pytest.raises(ConfigError, match="config.policy.mode"):
    _jtt(mode="both")
  with pytest.raises(ConfigError, match="config.policy.upweight"):
    _jtt(upweight=2.5)


@pytest.mark.slow
@pytest.mark.parametrize("method", SPUCO_METHODS)
def test_spuco_method_smoke_through_the_loop(method, tmp_path, monkeypatch):
  reinits = []
  original = policies.JustTrainTwice.wants_reinit

  def spy(self):
    reinits.append(original(self))
    return reinits[-1]

  monkeypatch.setattr(policies.JustTrainTwice, "wants_reinit", spy)
  config = _smoke(f"configs.spuco.{method}_digits")
  run_dir, results = runner.run(config, str(tmp_path))
  assert _read_results(run_dir)["worst_group_accuracy"] == results["worst_group_accuracy"]
  for key in ("worst_group_accuracy", "average_accuracy", "test_accuracy"):
    assert 0.0 <= results[key] <= 1.0, key
  assert len(results["group_accuracy"]) == 4
  assert results["worst_group_accuracy"] == min(results["group_accuracy"].values())
  assert os.path.exists(os.path.join(run_dir, "group_accuracy.png"))
  if method != "dfr":
    assert results["selected_epoch"] >= 1  # selection by val worst-group accuracy
  if method == "jtt":  # the fresh model comes exactly once, after stage 1
    assert reinits == [True, False, False]
    assert results["jtt_error_set_size"] == sum(results["jtt_error_set_group_counts"])
    assert results["examples_probed"] > 0
  if method == "dfr":
    assert results["dfr_c"] in dfr_lib.C_GRID
    for key in ("erm_worst_group_accuracy", "erm_average_accuracy", "erm_group_accuracy",
                "erm_test_accuracy"):
      assert key in results, key
    assert results["worst_group_accuracy"] == min(results["group_accuracy"].values())
  if method == "pde":  # 4 epochs on a subset: far fewer gradient computations than ERM
    assert results["pde_subset_size"] < 0.5 * 1078
    assert results["examples_seen"] < 4 * 1078 / 2


@pytest.mark.slow
def test_synthetic_erm_and_pde_report_filter_alignment(tmp_path):
  out = {}
  for method in ("erm", "pde"):
    _, out[method] = runner.run(_smoke(f"configs.pde.synthetic_{method}"), str(tmp_path))
    for key in ("core_alignment", "spurious_alignment", "worst_group_accuracy"):
      assert np.isfinite(out[method][key]), (method, key)
  # Even 30 full-batch steps show the mechanism: ERM grows the spurious direction first.
  assert out["erm"]["spurious_alignment"] > out["erm"]["core_alignment"]
  assert out["pde"]["examples_seen"] < out["erm"]["examples_seen"]
