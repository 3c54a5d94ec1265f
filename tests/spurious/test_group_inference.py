"""Group inference as a stage (issue 25): each method recovers planted groups, EIIL's environment
logits raise the IRM penalty (against a float64 finite-difference computation), a run on
inferred groups trains exactly as on the same partition given as annotations, and bad inputs
are clear errors naming the field."""

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from robustdata import config_lib, runner
from robustdata.data import sources
from robustdata.poisoning.artifact import dataset_fingerprint
from robustdata.registry import ConfigError
from robustdata.spurious import group_source, infer_stage
from robustdata.spurious import inference as inf
from robustdata.train.driver import Driver
from robustdata.train.supervised import SupervisedTask

# Agreement bounds with the planted groups (measured: ARI >= 0.99 and recall 1.0 for each).
MIN_ARI, MIN_RECALL = 0.9, 0.9


@pytest.fixture(scope="module")
def planted():
  """A linearly separable spurious attribute a (= y for 90%) far stronger than the core feature;
  the reference is an ERM logistic regression, which leans on a. Groups (y, a)."""
  rng = np.random.default_rng(0)
  n = 600
  y = rng.integers(0, 2, n)
  a = np.where(rng.random(n) < 0.9, y, 1 - y)
  x = np.concatenate([(2 * y - 1)[:, None] * 0.3 + rng.normal(0, 1.0, (n, 1)),
                      (2 * a - 1)[:, None] * 2.0 + rng.normal(0, 0.3, (n, 1)),
                      rng.normal(0, 1, (n, 3))], axis=1)
  s = LogisticRegression().fit(x, y).decision_function(x) / 2
  return np.stack([-s, s], 1), y.astype(np.int32), (2 * y + a).astype(np.int32)


@pytest.mark.parametrize("method,fields", [("jtt", {}), ("cluster", {}),
                                           ("cluster", {"algorithm": "gmm"}),
                                           ("cluster", {"features": "probs"}), ("spare", {}),
                                           ("eiil", {"eiil_steps": 1000})])
def test_each_method_recovers_planted_groups(planted, method, fields):
  logits, y, true = planted
  get = lambda k: {**infer_stage.INFERENCE_DEFAULTS, "method": method, **fields}[k]
  groups, names, _, _ = infer_stage.infer(get, logits, logits, y, num_classes=2)
  assert len(names) == groups.max() + 1 and np.bincount(groups).min() > 0
  q = inf.quality(groups, true, y)
  assert q["adjusted_rand_index"] >= MIN_ARI, q
  assert q["minority_group_recall"] >= MIN_RECALL, q


def test_quality_against_brute_force():
  rng = np.random.default_rng(1)
  y = rng.integers(0, 2, 200)
  true = 2 * y + (rng.random(200) < 0.2)
  assert inf.quality(7 - true, true, y)["adjusted_rand_index"] == pytest.approx(1.0)
  inferred = 2 * y + (rng.random(200) < 0.3)
  q = inf.quality(inferred, true, y)
  true_min = np.array([t % 2 == 1 for t in true])  # (y, 1) is each class's smaller group here
  inf_min = np.array([g != np.bincount(inferred[y == c]).argmax() for g, c in zip(inferred, y)])
  assert q["minority_group_recall"] == pytest.approx((true_min & inf_min).sum() / true_min.sum())
  assert q["minority_group_precision"] == pytest.approx((true_min & inf_min).sum() / inf_min.sum())


def _penalty_fd(env_logits, logits, y, h=1e-6):
  """IRMv1 penalty in float64 by central differences of the weighted mean cross-entropy in the
  scale s at s = 1 (no autodiff, no closed form)."""
  w = 1 / (1 + np.exp(-np.asarray(env_logits, np.float64)))
  z = np.asarray(logits, np.float64)

  def risk(s, weight):
    zs = s * z
    lse = np.log(np.exp(zs - zs.max(1, keepdims=True)).sum(1)) + zs.max(1)
    return np.mean(weight * (lse - zs[np.arange(len(y)), y]))
  grads = [(risk(1 + h, v) - risk(1 - h, v)) / (2 * h) for v in (w, 1 - w)]
  return 0.5 * (grads[0] ** 2 + grads[1] ** 2)


def test_eiil_env_logits_raise_the_irm_penalty(planted):
  logits, y, _ = planted
  env, u, (before, after) = inf.eiil_environments(logits, y, steps=500, lr=0.01, seed=3)
  u0 = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (len(y),)))
  assert before == pytest.approx(_penalty_fd(u0, logits, y), rel=1e-3)
  assert after == pytest.approx(_penalty_fd(u, logits, y), rel=1e-3)
  assert _penalty_fd(u, logits, y) > 100 * _penalty_fd(u0, logits, y)
  assert set(np.unique(env)) == {0, 1}


def test_cluster_count_below_two_is_an_error():
  with pytest.raises(ConfigError, match=r"config.inference.min_clusters=1"):
    infer_stage.validate_inference({"min_clusters": 1})
  with pytest.raises(ConfigError, match=r"config.inference.max_clusters=2 must be >= "):
    infer_stage.validate_inference({"min_clusters": 3, "max_clusters": 2})
  with pytest.raises(ConfigError, match="min_clusters"):
    inf.best_clustering(np.zeros((10, 2)), min_clusters=1, max_clusters=3, algorithm="kmeans",
                        seed=0)
  with pytest.raises(ConfigError, match=r"config.inference.method='george'"):
    infer_stage.validate_inference({"method": "george"})


def test_partition_checks_name_the_field():
  part = inf.GroupPartition(groups=[0, 1, 1, 2], group_names=("a", "b", "c"), method="jtt",
                            run_id="r", reference_run_id="ref", data_fingerprint="f00")
  part.check(fingerprint="f00", num_examples=4, field="config.group_stage")
  with pytest.raises(ConfigError, match=r"config.group_stage: .*fingerprint f00.*fingerprint "
                                        r"bad"):
    part.check(fingerprint="bad", num_examples=4, field="config.group_stage")
  empty = dataclasses.replace(part, group_names=("a", "b", "c", "d"))
  with pytest.raises(ConfigError, match=r"config.group_stage: .*empty groups \['d'\]"):
    empty.check(fingerprint="f00", num_examples=4, field="config.group_stage")


def test_inferred_groups_need_a_method_that_reads_them(tiny_config):
  config = tiny_config()
  with pytest.raises(ConfigError, match=r"config.group_stage .*config.policy.name='full'"):
    group_source.check_consumer(config)
  config.method = "dfr"
  with pytest.raises(ConfigError, match=r"config.dfr.held_out='train'"):
    group_source.check_consumer(config)
  config.method, config.policy.name = "groupdro", "group_balanced"
  group_source.check_consumer(config)


# --- The downstream run on inferred groups. ------------------------------------------------------

def _chain(tiny_config, *, data_seed=0):
  """A tiny GroupDRO run on spuco_digits whose config.group_stage names an inference stage."""
  def data(c):
    c.data.name = "spuco_digits"
    c.data.classes = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    c.data.spurious_correlation_strength = 0.9
    c.data.val_fraction = 0.2
    c.data.seed = 0
  stage = tiny_config(trainer="group_inference", name="tiny_infer")
  data(stage)
  stage.data.seed = data_seed
  stage.inference = ml_collections.ConfigDict(dict(infer_stage.INFERENCE_DEFAULTS))
  stage.reference = tiny_config(name="tiny_reference")
  data(stage.reference)
  config = tiny_config(method="groupdro", name="tiny_dro")
  data(config)
  config.policy.name = "group_balanced"
  config.train.max_steps = 6
  config.group_stage = stage
  return config


def _write_partition(config, workdir, partition, *, fingerprint=None):
  """The artifact of config.group_stage's run, as the inference stage writes it."""
  stage = config_lib.resolve(config.group_stage)
  data = sources.load(stage.data)
  names = tuple(f"g{k}" for k in range(int(partition.max()) + 1))
  part = inf.GroupPartition(groups=partition, group_names=names, method="jtt",
                            run_id=config_lib.run_id(stage), reference_run_id="ref",
                            data_fingerprint=fingerprint or dataset_fingerprint(
                                data.train.x, data.train.y))
  part.save(os.path.join(workdir, config_lib.run_id(stage)))
  return part


class _Annotated(SupervisedTask):
  """The same partition given as the data source's annotations (no config.group_stage)."""

  def __init__(self, partition):
    self.partition = partition

  def load_data(self, config):
    data = sources.load(config.data)
    g = int(self.partition.max()) + 1
    return dataclasses.replace(
        data, train=data.train.replace(groups=self.partition),
        val=data.val.replace(groups=None), test=data.test.replace(groups=None), num_groups=g,
        group_names=tuple(f"g{k}" for k in range(g)))


def test_inferred_groups_train_exactly_as_annotations(tiny_config, tmp_path):
  config = _chain(tiny_config)
  n = len(sources.load(config_lib.resolve(config).data).train)
  rng = np.random.default_rng(5)
  y = sources.load(config_lib.resolve(config).data).train.y
  partition = (3 * y + rng.integers(0, 3, n)).astype(np.int32)  # 6 groups, not the true 4
  _write_partition(config, str(tmp_path), partition)
  inferred = SupervisedTask()
  Driver(config_lib.resolve(config), str(tmp_path / "inferred")).run(inferred)
  assert inferred.policy.num_groups == 6 and inferred.objective.num_groups == 6
  assert inferred.data.num_groups == 4  # evaluation keeps the annotated groups
  assert inferred.train_group_counts.tolist() == np.bincount(
      sources.load(config_lib.resolve(config).data).train.groups).tolist()

  plain = config_lib.from_dict(config_lib.to_dict(config))
  with plain.unlocked():
    del plain["group_stage"]
  annotated = _Annotated(partition)
  Driver(config_lib.resolve(plain), str(tmp_path / "annotated")).run(annotated)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(inferred.state.params),
               jax.device_get(annotated.state.params))
  np.testing.assert_array_equal(jax.device_get(inferred.state.method_state["q"]),
                                jax.device_get(annotated.state.method_state["q"]))


def test_fingerprint_mismatch_is_a_clear_error(tiny_config, tmp_path):
  config = _chain(tiny_config)
  y = sources.load(config_lib.resolve(config).data).train.y
  _write_partition(config, str(tmp_path), y.astype(np.int32),
                   fingerprint="0123456789abcdef")
  with pytest.raises(ConfigError, match=r"config.group_stage: .*fingerprint 0123456789abcdef"):
    Driver(config_lib.resolve(config), str(tmp_path / "run")).run(SupervisedTask())


def test_group_stage_must_be_an_inference_stage(tiny_config, tmp_path):
  config = _chain(tiny_config)
  with config.unlocked():
    config.group_stage.trainer = "supervised"
  with pytest.raises(ConfigError, match=r"config.group_stage.trainer='supervised'"):
    runner.run(config, str(tmp_path))


@pytest.mark.slow
def test_smoke_chain_jtt_groupdro(tmp_path):
  """The three stages of configs/spuco/groupdro_inferred_digits.py:smoke through runner.run;
  a rerun reuses every stage."""
  from configs.spuco import groupdro_inferred_digits  # pylint: disable=g-import-not-at-top
  config = groupdro_inferred_digits.get_config("smoke")
  run_dir, results = runner.run(config, str(tmp_path))
  stage_dir = runner.stage_dir(config, "group_stage", run_dir)
  with open(os.path.join(stage_dir, "results.json")) as f:
    inferred = json.load(f)
  assert inferred["inference_method"] == "jtt"
  assert 0.0 <= inferred["minority_group_recall"] <= 1.0
  assert -1.0 <= inferred["adjusted_rand_index"] <= 1.0
  part = inf.GroupPartition.load(stage_dir)
  assert part.run_id == os.path.basename(stage_dir)
  assert part.reference_run_id == os.path.basename(
      runner.stage_dir(config.group_stage, "reference", stage_dir))
  assert results["method"] == "groupdro" and 0.0 <= results["worst_group_accuracy"] <= 1.0
  _, again = runner.run(config, str(tmp_path))
  assert again["worst_group_accuracy"] == results["worst_group_accuracy"]
