"""SSA group inference (issue 25): it recovers planted groups of a linearly separable spurious
attribute, a labelled split without a minority example is a ConfigError naming the field, its
config fields are checked, and the smoke stage configs/spuco/infer_ssa_digits.py runs."""

import numpy as np
import pytest

from robustdata import runner
from robustdata.registry import ConfigError
from robustdata.spurious import infer_stage, ssa
from robustdata.spurious import inference as inf

# Agreement bound with the planted groups (measured on this data: ARI 0.996 with the default
# MLP predictor, 0.987 with softmax regression; minority recall 1.0 for both).
MIN_ARI, MIN_RECALL = 0.95, 0.95


def _planted(n, rng):
  """Class y from a weak core feature; attribute a (= y for 90%) linearly separable in x."""
  y = rng.integers(0, 2, n)
  a = np.where(rng.random(n) < 0.9, y, 1 - y)
  x = np.concatenate([(2 * y - 1)[:, None] * 0.3 + rng.normal(0, 1, (n, 1)),
                      (2 * a - 1)[:, None] * 1.0 + rng.normal(0, 0.3, (n, 1)),
                      rng.normal(0, 1, (n, 8))], axis=1).astype(np.float32)
  return x, y, a


@pytest.mark.parametrize("hidden,steps", [(64, 300), (0, 200)])
def test_ssa_recovers_planted_groups(hidden, steps):
  rng = np.random.default_rng(0)
  x, y, a = _planted(1000, rng)
  xv, yv, av = _planted(200, rng)  # the group-labelled split
  groups, names, info = ssa.ssa_groups(x, y, xv, yv, av, num_classes=2, hidden=hidden,
                                       steps=steps, seed=0)
  assert names == ("y=0,s=0", "y=0,s=1", "y=1,s=0", "y=1,s=1")
  q = inf.quality(groups, 2 * y + a, y)
  assert q["adjusted_rand_index"] >= MIN_ARI, q
  assert q["minority_group_recall"] >= MIN_RECALL, q
  assert len(info["ssa_pseudo_labelled"]) == 3 and min(info["ssa_pseudo_labelled"]) > 0


def test_labelled_split_without_minority_is_a_clear_error():
  rng = np.random.default_rng(1)
  x, y, a = _planted(200, rng)
  xv, yv, _ = _planted(60, rng)
  with pytest.raises(ConfigError, match=r"config.inference.ssa_labelled_fraction: .*no "
                                        r"minority-group example"):
    ssa.ssa_groups(x, y, xv, yv, yv.copy(), num_classes=2, steps=10)  # attribute = class
  del a


def test_ssa_fields_are_checked():
  with pytest.raises(ConfigError, match=r"config.inference.method='ssa' needs "
                                        r"config.inference.ssa_labelled_fraction"):
    infer_stage.validate_inference({"method": "ssa"})
  good = {**infer_stage.INFERENCE_DEFAULTS, **infer_stage.SSA_DEFAULTS, "method": "ssa"}
  infer_stage.validate_inference(good)
  with pytest.raises(ConfigError, match=r"config.inference.ssa_input='logits'"):
    infer_stage.validate_inference({**good, "ssa_input": "logits"})
  with pytest.raises(ConfigError, match=r"config.inference.ssa_threshold=1.5"):
    infer_stage.validate_inference({**good, "ssa_threshold": 1.5})


@pytest.mark.slow
def test_ssa_smoke_stage(tmp_path):
  """configs/spuco/infer_ssa_digits.py:smoke through runner.run (with its reference stage):
  a partition of the train split scored against the true groups."""
  from configs.spuco import infer_ssa_digits  # pylint: disable=g-import-not-at-top
  config = infer_ssa_digits.get_config("smoke")
  run_dir, results = runner.run(config, str(tmp_path))
  assert results["inference_method"] == "ssa"
  part = inf.GroupPartition.load(run_dir)
  assert part.method == "ssa" and part.num_groups == results["num_inferred_groups"]
  assert -1.0 <= results["adjusted_rand_index"] <= 1.0
  assert 0.0 <= results["minority_group_recall"] <= 1.0
  assert results["inference_ssa_labelled"] == 359
