"""End-to-end smoke runs of the selection policies through `robustdata.runner.run` (tiny MLP
on digits), and a killed-and-resumed CREST run ending with the same results."""

import importlib

import pytest

from robustdata import runner
from robustdata.train import driver
from tests.conftest import sigint_after

CASES = [
    ("configs.craig.digits", "smoke"),
    ("configs.crest.digits", "smoke"),
    ("configs.augment_coresets.digits", "smoke"),
    ("configs.ordering.digits", "smoke"),
]


def _tiny(module, arg, **train):
  config = importlib.import_module(module).get_config(arg)
  with config.unlocked():
    config.model.name = "mlp"
    config.model.hidden = (32,)
    config.train.progress = "none"
    config.train.epochs = 2
    for k, v in train.items():
      config.train[k] = v
  return config


@pytest.mark.parametrize("module, arg", CASES, ids=[m.split(".")[1] for m, _ in CASES])
def test_smoke_run(module, arg, tmp_path):
  config = _tiny(module, arg)
  _, results = runner.run(config, str(tmp_path))
  assert results["steps"] > 0 and 0.0 <= results["test_accuracy"] <= 1.0
  assert results["selection_time_s"] >= 0.0
  if config.policy.name == "crest":
    assert results["crest_selections"] >= 1 and results["examples_probed"] > 0
    assert results["steps"] == 2 * 6  # T_e = ceil(floor(0.2 * 1258) / 50) = 6


@pytest.mark.slow
def test_crest_resume_matches_uninterrupted_run(tmp_path):
  config = _tiny("configs.crest.digits", "smoke", epochs=3, checkpoint_every_steps=4)
  _, full = runner.run(config, str(tmp_path / "a"))
  with pytest.MonkeyPatch.context() as patch:
    sigint_after(patch, 10)
    with pytest.raises(driver.Interrupted, match="at step 10"):  # checkpointed at step 10
      runner.run(config, str(tmp_path / "b"))
  _, resumed = runner.run(config, str(tmp_path / "b"))
  for key in ("test_accuracy", "test_loss", "steps", "crest_selections", "crest_checks",
              "examples_seen", "examples_probed"):
    assert full[key] == resumed[key], key
