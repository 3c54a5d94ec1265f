"""robustdata.validation: declared ranges (table-driven), coverage of every numeric default,
every shipped config and variant accepted, SELECT_BY against the evaluators, check_data,
variant parsing, and the selection kernels' preconditions (odd n, padding inside)."""

import glob
import math
import os
import threading
import time

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata import config_lib, registry, validation
from robustdata.contrastive import config as contrastive_config
from robustdata.data.dataset import DataSplits, Dataset
from robustdata.evals import classification
from robustdata.evals import groups as group_evals
from robustdata.registry import ConfigError
from robustdata.selection import crest, greedy, similarity
from robustdata.selection.facility_location import greedy_select
from tests.conftest import REPO
from tests.test_configs import _load


def _base():
  c = config_lib.base_config()
  c.model.name = "cnn"
  return config_lib.with_defaults(c)


def _with(config, dotted, value):
  """A copy of `config` (plain, unlocked) with field `dotted` set to `value`, any type."""
  d = config_lib.to_dict(config)
  node = d
  *parents, field = dotted.split(".")
  for p in parents:
    node = node.setdefault(p, {})
  node[field] = value
  return config_lib.from_dict(d)


BAD = [
    ("seed", -1), ("seed", 2**32), ("seed", 1.5), ("seed", True), ("data.split_seed", -3),
    ("data.crop_padding", -1), ("data.val_fraction", 1.0), ("data.val_fraction", -0.1),
    ("data.test_fraction", 1.2), ("data.upsample", 0), ("data.train_copies", -1),
    ("data.label_noise", 1.0), ("data.augment", "crop"),
    ("optim.learning_rate", float("nan")), ("optim.learning_rate", float("inf")),
    ("optim.learning_rate", -0.1), ("optim.learning_rate", "0.1"), ("optim.momentum", -5),
    ("optim.momentum", 1.0), ("optim.weight_decay", -1e-4), ("optim.warmup_epochs", -1.0),
    ("optim.milestones", (100, 50)), ("optim.milestones", (10, 10)), ("optim.milestones", 5),
    ("optim.milestones", (-1, 5)), ("optim.gamma", 0.0), ("optim.label_smoothing", 1.5),
    ("optim.label_smoothing", -0.1), ("optim.grad_clip_norm", -1.0), ("optim.nesterov", 1),
    ("train.epochs", 0), ("train.batch_size", -4), ("train.max_steps", -1),
    ("train.max_checkpoints_to_keep", 0), ("train.eval_every_epochs", 0),
    ("train.log_every_steps", 2.0), ("eval.select_by", "val_acc"),
    ("eval.select_by", "test_accuracy"), ("eval.select_by", "val_per_class_accuracy"),
    ("privacy.clip_norm", 0.0), ("privacy.clip_norm", float("inf")),
    ("privacy.noise_multiplier", -1.0), ("privacy.target_epsilon", -1.0),
    ("privacy.target_epsilon", float("nan")), ("privacy.delta", 0.0), ("privacy.delta", 1.0),
    ("privacy.microbatch_size", -1), ("privacy.switch_epoch", -2),
    ("privacy.prune_sparsity", 1.0), ("privacy.prune_every_epochs", -1),
    ("model.channels", (32, 0)), ("model.channels", ()), ("model.channels", 32),
    ("model.dense", 0), ("policy.fraction", 0.0), ("policy.fraction", 1.5), ("policy.lag", 0),
    ("policy.min_train_size", -1), ("policy.upweight", 0.5), ("groupdro.step_size", -0.01),
    ("dfr.c_grid", ()), ("dfr.c_grid", (1.0, -1.0)), ("dfr.tune_fraction", 1.0),
    ("data.classes", ((0, 1), (1, 2))), ("data.classes", ((0, 10),)),
    ("contrastive.safe_threshold", 1.0), ("poison.rate", 1.5), ("poison.seed", -1),
]


@pytest.mark.parametrize("field,value", BAD, ids=[f"{f}={v!r}" for f, v in BAD])
def test_bad_values_are_named(field, value):
  errors = validation.range_errors(_with(_base(), field, value))
  assert len(errors) == 1, errors
  assert errors[0].startswith(f"config.{field}=") and "allowed:" in errors[0]
  with pytest.raises(ConfigError, match=f"config.{field}="):
    validation.check_ranges(_with(_base(), field, value))


GOOD = [
    ("seed", 0), ("seed", 2**32 - 1), ("optim.learning_rate", 0.0), ("optim.momentum", 0.0),
    ("optim.milestones", (10, 20)), ("optim.milestones", ()), ("optim.label_smoothing", 1.0),
    ("data.val_fraction", 0.0), ("privacy.delta", 1e-5), ("eval.select_by", "val_loss"),
    ("privacy.switch_epoch", -1), ("policy.upweight", 1), ("model.hidden", ()),
]


@pytest.mark.parametrize("field,value", GOOD, ids=[f"{f}={v!r}" for f, v in GOOD])
def test_edge_values_pass(field, value):
  assert validation.range_errors(_with(_base(), field, value)) == []


def test_all_violations_are_reported_together():
  config = _with(_with(_base(), "optim.momentum", -5), "train.max_steps", -1)
  with pytest.raises(ConfigError) as e:
    validation.check_ranges(config)
  assert "config.optim.momentum=-5" in str(e.value) and "config.train.max_steps=-1" in str(e.value)


def test_range_rule_against_closed_form():
  rule = validation.Range(0.0, 1.0, lo_inclusive=False)
  for v, ok in [(0.0, False), (1e-12, True), (1.0, True), (1.0 + 1e-12, False), (math.nan, False),
                (-math.inf, False), (np.float32(0.5), True), (True, False)]:
    assert (rule.problem(v) is None) == ok, v
  assert rule.allowed == "a finite number in (0.0, 1.0]"
  assert validation.Int(1).problem(np.int64(3)) is None and validation.Int(1).problem(3.0)


def _numeric_defaults():
  """(dotted field, default) of every numeric, bool or tuple default the code declares."""
  registry._import_plugins()
  out = []
  for section, value in config_lib.to_dict(config_lib.base_config()).items():
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for key, v in items:
      out.append((section if key is None else f"{section}.{key}", v))
  for section, reg in (("data", registry.DATASETS), ("model", registry.MODELS),
                       ("policy", registry.POLICIES)):
    for name in reg.names():
      out += [(f"{section}.{k}", v) for k, v in reg.defaults(name).items()]
  for name in registry.OBJECTIVES.names():
    out += [(f"{name}.{k}", v) for k, v in registry.OBJECTIVES.defaults(name).items()]
  for method in contrastive_config.METHODS:
    out += [(f"contrastive.{k}", v) for k, v in contrastive_config.contrastive_defaults(method).items()]
  out += [(f"poison.{k}", v) for k, v in contrastive_config.poison_defaults().items()]
  return [(f, v) for f, v in out
          if isinstance(v, (bool, int, float, tuple, list)) and not f.endswith(".name")]


def test_choice_rules_follow_the_modules_that_own_them():
  from robustdata.spurious import infer_stage  # pylint: disable=g-import-not-at-top
  assert validation.rule_for("inference.method").problem("nope") is not None
  for method in infer_stage.METHODS:
    assert validation.rule_for("inference.method").problem(method) is None, method
  for value in infer_stage.SSA_INPUTS:
    assert validation.rule_for("inference.ssa_input").problem(value) is None, value


def test_every_numeric_default_has_a_rule_it_satisfies():
  fields = _numeric_defaults()
  assert len(fields) > 120
  missing = sorted({f for f, _ in fields if validation.rule_for(f) is None})
  assert missing == []
  for f, v in fields:
    v = tuple(v) if isinstance(v, list) else v
    assert validation.rule_for(f).problem(v) is None, (f, v)


# Every variant token each config file accepts (besides 'smoke'), one at a time; each is also
# tried with ',smoke' except where the file takes a single token (pde/synthetic_*).
VARIANTS = {
    "crest/digits.py": ["full", "random", "craig", "hard", "loose", "b10", "hard,loose"],
    "craig/digits.py": ["hard", "b10"],
    "ordering/digits.py": ["descending", "examples", "random", "descending,examples", "fixed",
                           "grab", "grab,linear", "decreasing"],
    "augment_coresets/digits.py": ["random", "full_aug", "none"],
    "dpsgd/digits.py": ["eps1", "eps8", "sgd", "clip_only", "noise_only", "sparsity90",
                        "dp_then_sgd", "sgd_then_dp"],
    "dpsgd/cifar10.py": ["eps1", "sgd_then_dp"],
    "pde/synthetic_erm.py": ["case2"],
    "pde/synthetic_pde.py": ["case2"],
}
SINGLE_TOKEN = ("pde/synthetic_erm.py", "pde/synthetic_pde.py")
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"),
                                           recursive=True)
                      if not p.endswith("__init__.py") and not p.endswith("common.py"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_shipped_configs_and_variants_validate(path):
  module = _load(path)
  if not hasattr(module, "get_config"):
    pytest.skip("a sweep file whose points name their configs (configs/campaigns/)")
  rel = os.path.relpath(path, os.path.join(REPO, "configs"))
  args = [None, "smoke"]
  for v in VARIANTS.get(rel, []):
    args += [v] if rel in SINGLE_TOKEN else [v, v + ",smoke"]
  for arg in args:
    config = config_lib.with_defaults(module.get_config(arg))
    assert validation.range_errors(config) == [], (arg, validation.range_errors(config))
    if config.trainer == "contrastive":
      contrastive_config.validate(config, num_devices=1)
    else:
      config_lib.validate(config, num_devices=1)
  for bad in ("bogus", "smoke,bogus", "smoke,smoke", ",smoke", "Smoke"):
    with pytest.raises(ConfigError, match="allowed tokens"):
      module.get_config(bad)


def test_select_by_names_the_evaluators_scalar_val_metrics():
  rng = np.random.default_rng(0)
  logits, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
  groups = rng.integers(0, 4, 40)
  metrics = classification.classification_metrics(logits, y, num_classes=3)
  metrics.update(group_evals.group_report(logits.argmax(-1), y, groups, num_groups=4,
                                          train_group_counts=np.ones(4)))
  scalars = {f"val_{k}" for k, v in metrics.items() if isinstance(v, float)}
  assert set(validation.SELECT_BY) <= scalars
  assert validation.SELECT_BY["val_loss"] == "min"
  assert {v for k, v in validation.SELECT_BY.items() if "accuracy" in k} == {"max"}


def _splits(n_val, groups=True):
  def part(n):
    g = np.arange(n) % 4 if groups else None
    return Dataset(x=np.zeros((n, 2, 2, 1), np.float32), y=np.arange(n) % 2,
                   ids=np.arange(n), groups=g)
  return DataSplits(train=part(8), val=part(n_val), test=part(8), num_classes=2,
                    num_groups=4 if groups else 0)


def test_check_data():
  config = _with(_base(), "eval.select_by", "val_accuracy")
  validation.check_data(config, _splits(4))
  with pytest.raises(ConfigError, match="config.eval.select_by='val_accuracy'.*empty"):
    validation.check_data(config, _splits(0))
  config = _with(_base(), "eval.select_by", "val_worst_group_accuracy")
  with pytest.raises(ConfigError, match="needs group labels"):
    validation.check_data(config, _splits(4, groups=False))
  validation.check_data(_base(), _splits(0))  # nothing reads val
  with pytest.raises(ConfigError, match="config.dfr.held_out"):
    validation.check_data(_with(_base(), "method", "dfr"), _splits(0))


def test_parse_variants():
  assert validation.parse_variants(None, ("a", "b"), "x") == set()
  assert validation.parse_variants("b,a", ("a", "b"), "x") == {"a", "b"}
  with pytest.raises(ConfigError, match=r"choose at most one of \['a', 'b'\]"):
    validation.parse_variants("a,b", ("a", "b"), "x", exclusive=(("a", "b"),))
  with pytest.raises(ConfigError, match=r"unknown token\(s\) \['c'\].*allowed tokens"):
    validation.parse_variants("a,c", ("a", "b"), "x")


def _brute_force(sim, k, w, allowed):
  """Exact greedy FL in float64 (lowest index on ties)."""
  sim = np.asarray(sim, np.float64)
  cur, order = np.zeros(sim.shape[0]), []
  for _ in range(k):
    gains = np.maximum(sim - cur[None, :], 0.0) @ w
    gains[~allowed] = -np.inf
    gains[order] = -np.inf
    j = int(np.argmax(gains))
    order.append(j)
    cur = np.maximum(cur, sim[j])
  return order


@pytest.mark.parametrize("n", [129, 200, 300])
def test_lazy_greedy_any_n_matches_padded_caller_and_brute_force(n):
  rng = np.random.default_rng(n)
  x = rng.normal(size=(n, 5)).astype(np.float32)
  x -= x.mean(axis=0)
  w = rng.uniform(0.5, 1.5, n).astype(np.float32)
  k = 12
  d = np.sqrt(np.maximum(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1), 0.0))
  sim = np.exp(-d / 5)
  expected = _brute_force(sim, k, w, np.ones(n, bool))
  order, _, _, _ = greedy.lazy_greedy_dense(jnp.asarray(sim, jnp.float32), k, jnp.asarray(w))
  assert np.asarray(order).tolist() == expected
  gains0 = (sim * w[:, None]).sum(0)
  order, _, _, _ = greedy.lazy_greedy(jnp.asarray(x), jnp.asarray(w), jnp.ones(n, bool),
                                      jnp.asarray(gains0, jnp.float32), jnp.asarray(0.0), k,
                                      kernel="exp", dim=5)
  assert np.asarray(order).tolist() == expected
  padded = greedy_select(x, k, kernel="exp", method="lazy", row_weights=w)
  assert padded.tolist() == expected


def test_kernel_preconditions_are_stated():
  x = jnp.zeros((100, 3))
  with pytest.raises(ValueError, match="not a multiple of block=64.*pad_rows"):
    similarity.initial_gains(x, jnp.ones(100), jnp.ones(100, bool), kernel="exp", block=64, dim=3)
  with pytest.raises(ValueError, match="not a multiple of block"):
    similarity.similarity_matrix(x, jnp.asarray(1.0), kernel="exp", block=64, dim=3)
  with pytest.raises(ValueError, match=r"k=101 picks must be in \[0, n=100\]"):
    greedy.lazy_greedy_dense(jnp.zeros((100, 100)), 101)
  with pytest.raises(ValueError, match="not \\(n, n\\)"):
    greedy.greedy_fl(jnp.zeros((100, 50)), 3)
  with pytest.raises(ValueError, match="row_weights has 7 rows"):
    greedy.lazy_greedy_dense(jnp.zeros((10, 10)), 3, jnp.ones(7))


def test_crest_close_joins_the_background_thread():
  policy = object.__new__(crest.Crest)
  done = []
  policy._precompile = threading.Thread(target=lambda: (time.sleep(0.3), done.append(1)))
  policy._precompile.start()
  policy.close()
  assert done == [1] and not policy._precompile.is_alive()
  policy._precompile = None
  policy.close()  # nothing started: a no-op


def test_choice_rules_agree_with_the_code_that_reads_them():
  from robustdata.data import image_augment
  assert set(validation.rule_for("contrastive.aug_chain").values) == set(image_augment.CHAINS)
  for method in contrastive_config.METHODS:
    for key, value in contrastive_config.contrastive_defaults(method).items():
      rule = validation.rule_for(f"contrastive.{key}")
      if isinstance(value, str) and rule is not None:
        assert rule.problem(value) is None, (key, value)
  assert validation.rule_for("poison.kind").problem(contrastive_config.poison_defaults().kind) is None
  assert validation.rule_for("train.progress").problem(config_lib.base_config().train.progress) is None
  bad = contrastive_config.poison_defaults()
  bad.kind = "sneaky"
  assert validation.range_errors({"poison": bad.to_dict()}) == [
      "config.poison.kind='sneaky' is not known; allowed: ['none', 'targeted', 'backdoor', 'both']"]
