"""The clean-label poisoning experiment end to end: substitute -> craft -> victim as three runs.

Every attack's smoke config runs through `runner.run` and writes the results contract; a second
defence reuses the substitute and the poisons; a crafting run interrupted between restarts
resumes to bitwise the same poisons; poisons made for other data are refused; bad attack and
defence fields are named before anything runs."""

import importlib
import json
import os
import signal

import jax
import numpy as np
import pytest

from robustdata import config_lib, runner
from robustdata.poisoning import artifact as artifact_lib
from robustdata.data import loader as loader_lib
from robustdata.data import sources
from robustdata.registry import ConfigError
from robustdata.train import supervised
from robustdata.train import driver
from robustdata.train import metrics as metrics_lib

ATTACKS = ("gm", "bp", "sa", "htb")


def _config(attack: str, variant: str = "smoke"):
  module = importlib.import_module(f"configs.friendly_noise.{attack}_digits")
  config = module.get_config(variant)
  with config.unlocked():
    config.train.progress = "none"
  return config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """One workdir for the module: the smoke substitute is trained once and reused."""
  return str(tmp_path_factory.mktemp("poisoning"))


def _stage_dirs(workdir: str) -> list[str]:
  return sorted(d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d)))


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
def test_smoke_run_of_every_attack(attack, workdir):
  config = _config(attack, "smoke,friendly_random")
  if attack == "gm":  # retrain once, after iteration 2 of 0-4, as the sa smoke config does
    with config.unlocked():
      config.poisons.attack.retrain_every = 2
  run_dir, results = runner.run(config, workdir)
  for key in ("test_accuracy", "poison_count", "poison_budget", "poison_eps", "defence",
              "config_hash", "wall_time_s", "friendly_time_s"):
    assert key in results, key
  assert results["defence"] == "friendly+random"
  assert ("backdoor_asr" in results) == (attack in ("sa", "htb"))
  assert ("targeted_asr" in results) == (attack != "sa")
  assert "epsilon" not in results or results.get("method") == "dp_sgd"
  craft_dir = runner.stage_dir(config_lib.resolve(config), "poisons", run_dir)
  art = artifact_lib.PoisonArtifact.load(craft_dir)
  assert len(art.base_indices) == results["poison_count"] == 50
  assert np.abs(art.perturbations).max() <= art.eps + 1e-6
  with open(os.path.join(craft_dir, "results.json")) as f:
    assert json.load(f)["attack"] == art.attack
  retrained = os.path.join(craft_dir, "retrain")
  assert (len(os.listdir(retrained)) if os.path.isdir(retrained) else 0) == (
      1 if attack in ("gm", "sa") else 0)


def _train_losses(run_dir: str) -> list[float]:
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [r["loss"] for r in rows if r.get("split") == "train"]


@pytest.mark.slow
def test_friendly_noise_gathered_on_the_devices_equals_the_host_path(tmp_path, monkeypatch):
  """The victim's batches and their Friendly Noise rows come from device copies of a small split
  (data/loader.py); the run equals one on the host path, where both are gathered on the host."""
  config = _config("sa", "smoke,friendly_random")
  takes = []
  take = loader_lib.BatchLoader.take
  monkeypatch.setattr(loader_lib.BatchLoader, "take",
                      lambda self, arrays, index: takes.append(sorted(arrays)) or take(
                          self, arrays, index))
  device_dir, device = runner.run(config, str(tmp_path / "device"))
  assert ["friendly"] in takes and (["x", "y"] in takes or ["groups", "x", "y"] in takes), takes
  takes.clear()
  monkeypatch.setattr(loader_lib, "RESIDENT_BYTES", 0)
  host_dir, host = runner.run(config, str(tmp_path / "host"))
  assert not takes, takes
  for key in ("test_accuracy", "backdoor_asr", "friendly_mean_abs", "friendly_mean_divergence"):
    assert host[key] == device[key], key
  assert _train_losses(host_dir) == _train_losses(device_dir)


@pytest.mark.slow
def test_a_second_defence_reuses_the_substitute_and_the_poisons(workdir):
  runner.run(_config("bp", "smoke,none"), workdir)
  before = {d: os.path.getmtime(os.path.join(workdir, d, "results.json"))
            for d in _stage_dirs(workdir) if d.startswith("fn_craft_bullseye")
            or d.startswith("fn_substitute")}
  assert len(before) == 2
  _, results = runner.run(_config("bp", "smoke,random"), workdir)
  after = {d: os.path.getmtime(os.path.join(workdir, d, "results.json")) for d in before}
  assert after == before  # neither stage ran again
  assert results["defence"] == "random"
  assert results["poisons_applied"]


@pytest.mark.slow
def test_the_clean_control_trains_without_the_poisons(workdir, monkeypatch):
  def refuse(self, x):
    raise AssertionError("the clean control applied the poisons")
  monkeypatch.setattr(artifact_lib.PoisonArtifact, "apply", refuse)
  _, results = runner.run(_config("bp", "smoke,clean"), workdir)
  assert results["defence"] == "clean" and not results["poisons_applied"]
  assert results["poison_count"] == 50 and "targeted_asr" in results  # the same targets
  with pytest.raises(AssertionError, match="applied the poisons"):
    runner.run(_config("bp", "smoke,none,seed1"), workdir)


@pytest.mark.slow
def test_interrupted_crafting_resumes_to_identical_poisons(tmp_path, monkeypatch):
  config = _config("gm", "smoke")
  craft = config_lib.resolve(config).poisons
  with craft.unlocked():
    craft.attack.restarts = 3
  craft = config_lib.resolve(craft)
  ref_dir, _ = runner.run(craft, str(tmp_path / "ref"))

  append, count = metrics_lib.MetricsWindow.append, [0]

  def interrupt_after_first_restart(self, metrics):
    append(self, metrics)
    if "accuracy" not in metrics:  # a crafting step (the substitute's steps report accuracy)
      count[0] += 1
      if count[0] == 1:
        os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", interrupt_after_first_restart)
  killed = str(tmp_path / "killed")
  with pytest.raises(driver.Interrupted, match="at step 1; checkpoint saved"):
    runner.run(craft, killed)
  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", append)
  got_dir, _ = runner.run(craft, killed)
  ref, got = artifact_lib.PoisonArtifact.load(ref_dir), artifact_lib.PoisonArtifact.load(got_dir)
  np.testing.assert_array_equal(ref.perturbations, got.perturbations)
  np.testing.assert_array_equal(ref.base_indices, got.base_indices)
  with open(os.path.join(ref_dir, "results.json")) as f:
    ref_results = json.load(f)
  with open(os.path.join(got_dir, "results.json")) as f:
    got_results = json.load(f)
  assert ref_results["restart_objectives"] == got_results["restart_objectives"]


@pytest.mark.slow
def test_transfer_victim_trains_only_a_new_head_on_the_substitute(workdir):
  config = config_lib.resolve(_config("bp", "smoke,none"))
  run_dir, _ = runner.run(config, workdir)
  data = sources.load(config.data)
  _, victim = supervised.restore_model(config, run_dir, data)
  craft_dir = runner.stage_dir(config, "poisons", run_dir)
  _, substitute = supervised.restore_model(
      config.poisons.substitute, runner.stage_dir(config.poisons, "substitute", craft_dir), data)
  frozen = [k for k in substitute["params"] if k != "head"]
  assert frozen
  for name in frozen:  # the feature extractor is the substitute's, bit for bit
    for a, b in zip(jax.tree.leaves(victim["params"][name]),
                    jax.tree.leaves(substitute["params"][name])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
           zip(jax.tree.leaves(victim["params"]["head"]),
               jax.tree.leaves(substitute["params"]["head"]))]
  assert min(moved) > 0  # a new head, trained


@pytest.mark.slow
def test_bullseye_crafts_against_an_ensemble_of_substitutes(workdir):
  """`ensemble3`: the crafting stage names two more substitutes (other seeds) by config, each a
  run of its own; Bullseye Polytope's poisons are those of the kernel over all three, and not
  those against the first substitute alone."""
  from robustdata.poisoning import bullseye, craft
  from robustdata.poisoning import gradient_matching as gm
  config = config_lib.resolve(_config("bp", "smoke,none,ensemble3"))
  run_dir, _ = runner.run(config, workdir)
  craft_dir = runner.stage_dir(config, "poisons", run_dir)
  sections = craft.ensemble_sections(config.poisons)
  assert sections == ["substitute_1", "substitute_2"]
  data = sources.load(config.data)
  substitutes, sub_dirs = [], []
  for section in ("substitute", *sections):
    sub_dirs.append(runner.stage_dir(config.poisons, section, craft_dir))
    model, variables = supervised.restore_model(config.poisons[section], sub_dirs[-1], data)
    substitutes.append((variables, gm.model_fns(model)[1]))
  assert len(set(sub_dirs)) == 3 and all(os.path.isdir(d) for d in sub_dirs)
  with open(os.path.join(craft_dir, "results.json")) as f:
    assert json.load(f)["substitutes"] == 3
  art = artifact_lib.PoisonArtifact.load(craft_dir)
  assert art.extra["ensemble_run_ids"] == [os.path.basename(d) for d in sub_dirs[1:]]
  attack = config.poisons.attack
  x_target = data.test.x[attack.target_index]
  kwargs = dict(eps=attack.eps, lr=craft.REFERENCE_LR["bullseye"], iterations=attack.iterations)
  x_base = data.train.x[art.base_indices]
  ensemble, _ = bullseye.craft_bullseye(substitutes, x_base, x_target, **kwargs)
  np.testing.assert_allclose(art.perturbations, ensemble, atol=1e-6)
  single, _ = bullseye.craft_bullseye(substitutes[:1], x_base, x_target, **kwargs)
  assert np.abs(single - ensemble).max() > 1e-3


def test_poisons_for_other_data_are_refused(tmp_path):
  config = _config("bp")
  with config.unlocked():
    config.data.split_seed = 1  # the victim's train split is no longer the poisons'
  with pytest.raises(ConfigError, match="fingerprint"):
    runner.run(config, str(tmp_path))


@pytest.mark.parametrize("field,value,match", [
    ("poisons.attack.eps", 0.0, "config.attack.eps=0.0"),
    ("poisons.attack.eps", 1.5, "config.attack.eps=1.5"),
    ("poisons.attack.budget", 0.5, "config.attack.budget=0.5"),
    ("poisons.attack.budget", -0.01, "config.attack.budget=-0.01"),
    ("poisons.attack.name", "label_flip", "config.attack.name='label_flip'"),
    ("poisons.attack.target_index", 10_000, "config.attack.target_index=10000"),
    ("poisons.attack.trigger", "rainbow", "config.attack.trigger='rainbow'"),
    ("poisons.attack.retrain_every", 5, "config.attack.retrain_every=5 applies to"),
    ("friendly.clamp", -0.1, "config.friendly.clamp=-0.1"),
    ("friendly.noise_kind", "salt", "config.friendly.noise_kind='salt'"),
])
def test_bad_attack_and_defence_fields_are_named_before_anything_runs(field, value, match,
                                                                      tmp_path):
  config = _config("htb" if field.endswith(("trigger", "retrain_every")) else "gm")
  with config.unlocked():
    *path, name = field.split(".")
    section = config
    for part in path:
      section = section[part]
    section[name] = value
  with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace("[", r"\[")):
    runner.run(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # no stage started


def test_an_ensemble_for_another_attack_is_refused_before_anything_runs(tmp_path):
  with pytest.raises(ConfigError, match="config.substitute_1: an ensemble of substitutes applies "
                     "to config.attack.name='bullseye' only, not to 'gradient_matching'"):
    runner.run(_config("gm", "smoke,ensemble3"), str(tmp_path))
  assert not os.listdir(tmp_path)


def test_target_of_the_adversarial_class_is_refused(tmp_path):
  config = _config("gm")
  labels = importlib.import_module("configs.friendly_noise.common")._test_labels("digits")
  with config.unlocked():
    config.poisons.attack.target_index = int(np.flatnonzero(labels == 0)[0])
  with pytest.raises(ConfigError, match="same as config.attack.adversarial_class"):
    runner.run(config, str(tmp_path))
