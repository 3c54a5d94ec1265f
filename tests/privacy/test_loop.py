"""DP through the loop (runner.run): each mode, pruning and a mode switch, epsilon in
metrics.jsonl and results.json, bitwise resume with Poisson sampling, and bad inputs."""

import json
import math

import numpy as np
import pytest

from robustdata import runner
from robustdata.privacy import accounting, clipping, plan as plan_lib, policies
from robustdata.registry import ConfigError

DP = {"policy__name": "poisson", "privacy__sampling": "poisson", "privacy__clip_norm": 1.0,
      "privacy__noise_multiplier": 1.0, "train__epochs": 2}


def _records(run_dir, split):
  lines = (run_dir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r["split"] == split]


def _run(tmp_path, tiny_config, **overrides):
  c = tiny_config(**{**DP, **overrides})
  run_dir, results = runner.run(c, str(tmp_path))
  from pathlib import Path  # pylint: disable=g-import-not-at-top
  return Path(run_dir), results


@pytest.mark.parametrize("mode", ["clip_only", "noise_only", "dp_sgd"])
def test_each_dp_mode_runs_and_reports_the_contract(tmp_path, tiny_config, mode):
  """dp_sgd calibrates sigma to epsilon 4 over the run's steps; the others use sigma = 1."""
  extra = {"privacy__target_epsilon": 4.0} if mode == "dp_sgd" else {}
  run_dir, r = _run(tmp_path, tiny_config, privacy__mode=mode, **extra)
  for key in ("epsilon", "delta", "noise_multiplier", "sampling_rate", "clip_norm"):
    assert key in r
  assert r["sampling_rate"] == pytest.approx(64 / 1258) and r["clip_norm"] == 1.0
  assert r["steps"] == 2 * round(1258 / 64) and r["privacy_mode"] == mode
  assert r["test_accuracy"] > 0.3
  privacy = _records(run_dir, "privacy")
  assert [p["epoch"] for p in privacy] == [1, 2]
  if mode == "dp_sgd":  # finite epsilon, the accountant's value, growing every epoch
    expected = accounting.epsilon(noise_multiplier=r["noise_multiplier"],
                                  sampling_rate=64 / 1258, steps=r["steps"], delta=1e-5)
    assert r["epsilon"] == pytest.approx(expected) and r["target_epsilon"] == 4.0
    assert r["epsilon"] <= 4.0 and r["epsilon"] == pytest.approx(4.0, rel=1e-2)
    assert 0 < privacy[0]["epsilon"] < privacy[1]["epsilon"] == pytest.approx(expected)
  else:  # unclipped or noiseless steps have no finite guarantee
    assert r["epsilon"] == "inf" and privacy[-1]["epsilon"] == "inf"
    assert r["noise_multiplier"] == (0.0 if mode == "clip_only" else 1.0)
  # The train records carry the clipping statistics of the DP rule.
  train = _records(run_dir, "train")
  assert all("clip_fraction" in t and "accuracy" in t for t in train)


def test_sgd_mode_keeps_the_plain_rule(tmp_path, tiny_config):
  _, r = _run(tmp_path, tiny_config, privacy__mode="sgd", policy__name="full")
  assert "epsilon" not in r and r["test_accuracy"] > 0.5


def test_pruning_masks_params_and_mode_switch(tmp_path, tiny_config, monkeypatch):
  """dp_sgd for epoch 0, clip_only after; masks at 25% then 50% (iterative, global)."""
  seen = {}
  choose = plan_lib.DPPlan.choose

  def spy(self, epoch, params):
    seen[epoch] = (clipping.flatten(jax_get(params)),
                   None if self.mask is None else clipping.flatten(self.mask))
    return choose(self, epoch, params)

  monkeypatch.setattr(plan_lib.DPPlan, "choose", spy)
  run_dir, r = _run(tmp_path, tiny_config, privacy__mode="dp_sgd", privacy__switch_epoch=1,
                    privacy__switch_to_mode="clip_only", privacy__prune_sparsity=0.5,
                    privacy__prune_every_epochs=1)
  assert r["privacy_mode"] == "dp_sgd->clip_only" and r["epsilon"] == "inf"
  kernels = 64 * 32 + 32 * 10
  assert r["effective_dimension"] == r["total_dimension"] - round(0.5 * kernels)
  privacy = _records(run_dir, "privacy")
  assert privacy[0]["mode"] == "dp_sgd" and privacy[1]["mode"] == "clip_only"
  assert math.isfinite(privacy[0]["epsilon"]) and privacy[1]["epsilon"] == "inf"
  assert privacy[0]["effective_dimension"] == r["total_dimension"] - round(0.25 * kernels)
  # After an epoch under the epoch-0 mask, the pruned weights are still exactly zero.
  params_1, mask_0 = seen[1]
  for key, m in mask_0.items():
    assert np.all(params_1[key][np.asarray(m) == 0] == 0)
  assert sum(int(np.sum(np.asarray(m) == 0)) for m in mask_0.values()) == round(0.25 * kernels)


def test_recomputed_masks_reuse_the_compiled_step(tmp_path, tiny_config, monkeypatch):
  """Masks at the start of epochs 0, 1, 2 (20%, 40%, 60%) under one mode: the train step is
  built once (the mask is a step operand, not a constant), and each new mask is the one in
  force: the weights it prunes are exactly zero after its epoch."""
  from robustdata.train import step as step_lib  # pylint: disable=g-import-not-at-top
  built, seen = [], {}
  make, choose = step_lib.make_train_step, plan_lib.DPPlan.choose

  def count(*args, **kwargs):
    built.append(1)
    return make(*args, **kwargs)

  def spy(self, epoch, params):
    seen[epoch] = clipping.flatten(jax_get(params))
    choice = choose(self, epoch, params)
    seen[("mask", epoch)] = clipping.flatten(self.mask)
    return choice

  monkeypatch.setattr(step_lib, "make_train_step", count)
  monkeypatch.setattr(plan_lib.DPPlan, "choose", spy)
  _, r = _run(tmp_path, tiny_config, privacy__mode="dp_sgd", privacy__prune_sparsity=0.6,
              privacy__prune_every_epochs=1, train__epochs=3)
  assert len(built) == 1
  kernels = 64 * 32 + 32 * 10
  assert r["effective_dimension"] == r["total_dimension"] - round(0.6 * kernels)
  for epoch in (0, 1):
    mask, params = seen[("mask", epoch)], seen[epoch + 1]
    pruned = sum(int(np.sum(np.asarray(m) == 0)) for m in mask.values())
    assert pruned == round(0.2 * (epoch + 1) * kernels)
    for key, m in mask.items():
      assert np.all(params[key][np.asarray(m) == 0] == 0)


def jax_get(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.device_get(tree)


@pytest.mark.slow
def test_resume_is_bitwise_with_poisson_sampling_pruning_and_switch(tmp_path, tiny_config,
                                                                    monkeypatch):
  """A run stopped mid-epoch 1 (after the second prune and the switch) and rerun equals an
  unbroken run: the sampler's RNG, the mask and the modes ride in the checkpoint."""
  overrides = dict(privacy__mode="dp_sgd", privacy__switch_epoch=1,
                   privacy__switch_to_mode="noise_only", privacy__prune_sparsity=0.6,
                   privacy__prune_every_epochs=1, train__epochs=2,
                   train__checkpoint_every_steps=7, train__log_every_steps=1)
  ref_dir, ref = _run(tmp_path / "ref", tiny_config, **overrides)

  on_step = policies.PoissonPolicy.on_step

  def crash(self, ctx):
    on_step(self, ctx)
    if ctx.step == 25:  # epoch 1 has 20 steps from 20: the last checkpoint is step 21
      raise RuntimeError("killed")

  monkeypatch.setattr(policies.PoissonPolicy, "on_step", crash)
  with pytest.raises(RuntimeError, match="killed"):
    _run(tmp_path / "cut", tiny_config, **overrides)
  monkeypatch.setattr(policies.PoissonPolicy, "on_step", on_step)
  cut_dir, got = _run(tmp_path / "cut", tiny_config, **overrides)
  for key in runner.NONDETERMINISTIC:
    ref.pop(key, None), got.pop(key, None)
  assert got == ref
  ref_train = {t["step"]: t["loss"] for t in _records(ref_dir, "train")}
  got_train = {t["step"]: t["loss"] for t in _records(cut_dir, "train")}
  assert ref_train == got_train and len(ref_train) == 40


@pytest.mark.parametrize("overrides,needle", [
    ({"privacy__clip_norm": 0.0}, "config.privacy.clip_norm"),
    ({"privacy__noise_multiplier": -1.0}, "config.privacy.noise_multiplier"),
    ({"privacy__target_epsilon": 1e-4}, "config.privacy.target_epsilon"),
    ({"privacy__delta": 1e-3}, "config.privacy.delta"),
    ({"train__batch_size": 2048}, "sampling rate"),
    ({"policy__name": "full"}, "config.policy.name"),
    ({"model__name": "cnn", "model__norm": "batch"}, "config.model.norm"),
    ({"privacy__prune_sparsity": 1.0}, "config.privacy.prune_sparsity"),
    ({"privacy__switch_epoch": 1, "privacy__switch_to_mode": "dpsgd"},
     "config.privacy.switch_to_mode"),
])
def test_bad_inputs_stop_the_run_with_the_field_named(tmp_path, tiny_config, overrides,
                                                      needle):
  with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
    _run(tmp_path, tiny_config, privacy__mode="dp_sgd", **overrides)
  assert not list(tmp_path.glob("*/checkpoints/*"))  # nothing ran


def test_mask_round_trips_through_json():
  rng = np.random.default_rng(0)
  mask = {"a": {"kernel": (rng.random((5, 7)) < 0.5).astype(np.float32)},
          "b": {"bias": np.ones(3, np.float32)}}
  back = plan_lib.decode_mask(json.loads(json.dumps(plan_lib.encode_mask(mask))))
  np.testing.assert_array_equal(back["a"]["kernel"], mask["a"]["kernel"])
  np.testing.assert_array_equal(back["b"]["bias"], mask["b"]["bias"])
