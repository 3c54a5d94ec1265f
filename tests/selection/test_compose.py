"""The selection policies compose with the other families through the one training loop: a
CRAIG coreset under GroupDRO's objective on group-annotated data, CREST under the per-example
clipping rule (DP's clip_only ablation), and dp_sgd refusing a data-dependent policy, since its
privacy accounting holds only for the sampling policy it names."""

import importlib

import ml_collections
import pytest

from robustdata import runner
from robustdata.registry import ConfigError
from tests.selection.test_runs import _tiny


def test_craig_coreset_under_groupdro(tmp_path):
  config = importlib.import_module("configs.spuco.groupdro_digits").get_config("smoke")
  with config.unlocked():
    config.policy = ml_collections.ConfigDict(
        {"name": "craig", "fraction": 0.2, "lag": 1, "start_epoch": 0})
    config.train.progress = "none"
  _, results = runner.run(config, str(tmp_path))
  assert results["policy"] == "craig" and results["method"] == "groupdro"
  assert results["selection_time_s"] > 0.0
  # Three epochs of 20% coresets leave at least 40% of the train set unseen.
  assert results["never_selected_fraction"] >= 0.4
  assert len(results["group_accuracy"]) == 4 and 0.0 <= results["worst_group_accuracy"] <= 1.0


def test_crest_under_per_example_clipping(tmp_path):
  config = _tiny("configs.crest.digits", "smoke")
  with config.unlocked():
    config.privacy.mode = "clip_only"
    config.privacy.clip_norm = 0.5
  _, results = runner.run(config, str(tmp_path))
  assert results["privacy_mode"] == "clip_only" and results["clip_norm"] == 0.5
  assert results["epsilon"] == "inf"  # clipping alone is no privacy guarantee
  assert results["crest_selections"] >= 1 and results["steps"] == 2 * 6
  assert 0.0 <= results["test_accuracy"] <= 1.0


def test_dp_sgd_refuses_a_data_dependent_policy(tmp_path):
  config = _tiny("configs.craig.digits", "smoke")
  with config.unlocked():
    config.privacy.mode = "dp_sgd"
  with pytest.raises(ConfigError, match="config.policy.name='craig' does not match"):
    runner.run(config, str(tmp_path))
