"""Config hash stability, validation and the bad-input messages."""

import copy
import json

import ml_collections
import pytest

from robustdata import config_lib, validation
from robustdata.registry import ConfigError


def test_hash_is_stable_and_canonical():
  a = config_lib.base_config()
  b = config_lib.base_config()
  assert config_lib.config_hash(a) == config_lib.config_hash(b)
  assert len(config_lib.config_hash(a)) == 12
  # Field order does not matter; a dict built in another order hashes the same.
  reordered = ml_collections.ConfigDict(dict(reversed(list(a.to_dict().items()))))
  assert config_lib.config_hash(reordered) == config_lib.config_hash(a)
  # A round trip through config.json keeps the hash (tuples -> lists -> tuples).
  a.data.augment = ("crop", "flip")
  back = config_lib.from_dict(json.loads(json.dumps(config_lib.to_dict(a))))
  assert config_lib.config_hash(back) == config_lib.config_hash(a)


def test_hash_matches_independent_sha256():
  import hashlib
  c = config_lib.base_config()
  text = json.dumps(json.loads(json.dumps(c.to_dict(), default=list)), sort_keys=True,
                    separators=(",", ":"))
  assert config_lib.config_hash(c) == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_changed_field_changes_hash():
  a = config_lib.base_config()
  b = config_lib.base_config()
  b.seed = 1
  c = config_lib.base_config()
  c.optim.learning_rate = 0.1 + 1e-9
  hashes = {config_lib.config_hash(x) for x in (a, b, c)}
  assert len(hashes) == 3
  assert config_lib.run_id(a).startswith("run-")


@pytest.mark.parametrize("section,field,value,match", [
    ("model", "name", "resnet99", "config.model.name='resnet99' is not known; allowed values"),
    ("data", "name", "imagenet_zzz", "config.data.name='imagenet_zzz' is not known"),
    ("policy", "name", "nope", "config.policy.name='nope' is not known"),
    ("privacy", "mode", "nope", "config.privacy.mode='nope' is not known"),
    ("optim", "name", "lbfgs", "config.optim.name='lbfgs' is not known"),
    ("optim", "schedule", "linear", "config.optim.schedule='linear' is not known"),
    ("train", "epochs", 0, "config.train.epochs=0 must be a positive int"),
    ("train", "batch_size", -4, "config.train.batch_size=-4 must be a positive int"),
])
def test_validate_names_the_field(section, field, value, match):
  c = config_lib.base_config()
  c[section][field] = value
  with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace("[", r"\[")):
    config_lib.validate(c, num_devices=1)


def test_unknown_method_and_field():
  c = config_lib.base_config()
  c.method = "magic"
  with pytest.raises(ConfigError, match="config.method='magic' is not known"):
    config_lib.validate(c, num_devices=1)
  c = config_lib.base_config()
  c.train.unlocked_typo = 3
  with pytest.raises(ConfigError, match="config.train.unlocked_typo is not a known field"):
    config_lib.validate(c, num_devices=1)


def test_batch_size_must_divide_devices():
  c = config_lib.base_config()
  c.train.batch_size = 100
  with pytest.raises(ConfigError, match=r"config.train.batch_size=100 is not divisible by the "
                     r"number of devices \(8\); allowed values: multiples of 8"):
    config_lib.validate(c, num_devices=8)
  c.train.batch_size = 96
  config_lib.validate(c, num_devices=8)


def test_policy_defaults_are_part_of_the_hash_and_config_json(tiny_config, tmp_path,
                                                              monkeypatch):
  from robustdata import runner
  from robustdata.registry import POLICIES
  implicit = tiny_config(policy__name="random_subset", train__epochs=1)
  explicit = tiny_config(policy__name="random_subset", train__epochs=1, policy__fraction=0.1)
  resolved = config_lib.with_defaults(implicit)
  assert "fraction" not in implicit.policy  # the input is not changed
  assert resolved.policy.fraction == 0.1
  # Leaving a field at its default and naming it give the same run.
  assert config_lib.run_id(resolved) == config_lib.run_id(config_lib.with_defaults(explicit))
  run_dir, results = runner.run(implicit, str(tmp_path))
  assert run_dir.endswith(config_lib.run_id(resolved)) and results["config_hash"] in run_dir
  with open(f"{run_dir}/config.json") as f:
    assert json.load(f)["policy"] == {"name": "random_subset", "fraction": 0.1}
  assert runner.finished_results(implicit, str(tmp_path)) == results
  # A changed default changes the hash of a config that relies on it.
  monkeypatch.setitem(POLICIES.get("random_subset").DEFAULTS, "fraction", 0.2)
  assert config_lib.run_id(config_lib.with_defaults(implicit)) != config_lib.run_id(resolved)
  assert runner.finished_results(implicit, str(tmp_path)) is None
  # Other trainers' configs (and configs naming every field) come back unchanged.
  assert config_lib.with_defaults(explicit) is explicit


def test_data_and_model_defaults_are_part_of_the_hash(monkeypatch):
  from robustdata import models
  from robustdata.data import captioned_shapes
  from robustdata.registry import MODELS
  c = config_lib.base_config()  # digits and a CNN whose channels and dense it does not name
  resolved = config_lib.with_defaults(c)
  assert "dense" not in c.model  # the input is not changed
  assert tuple(resolved.model.channels) == (32, 64) and resolved.model.dense == 128
  assert config_lib.with_defaults(resolved) is resolved
  back = config_lib.from_dict(json.loads(config_lib.canonical_json(resolved)))
  assert config_lib.run_id(back) == config_lib.run_id(resolved)
  # The builder reads the dict it registers, so a changed default changes the hash and the model.
  monkeypatch.setitem(models.CNN_DEFAULTS, "dense", 64)
  assert config_lib.run_id(config_lib.with_defaults(c)) != config_lib.run_id(resolved)
  assert MODELS.get("cnn")(c.model, 10).dense == 64
  assert MODELS.get("cnn")(resolved.model, 10).dense == 128
  # Other trainers get their dataset's and model's defaults too.
  clip = config_lib.base_config()
  with clip.unlocked():
    clip.trainer = "contrastive"
    clip.data.name = "captioned_shapes"
    clip.model.name = "clip"
  resolved = config_lib.with_defaults(clip)
  assert resolved.data.num_train == captioned_shapes.DEFAULTS["num_train"]
  assert resolved.model.embed_dim == 128 and "fraction" not in resolved.policy
  # An unknown name is the registry's clear error.
  with clip.unlocked():
    clip.model.name = "resnet99"
  with pytest.raises(ConfigError, match="config.model.name='resnet99' is not known"):
    config_lib.with_defaults(clip)


def test_finalize_makes_every_policy_field_settable_and_switching_policy_safe():
  """finalize writes the file's policy fields it leaves out as typed None placeholders, so
  --config.policy.<field> parses for each; at run time a None field takes the chosen policy's
  default, and is dropped when a switched-to policy has no such field."""
  from robustdata.registry import POLICIES
  c = config_lib.base_config()
  with c.unlocked():
    c.policy.name = "crest"
    c.policy.train_frac = 0.2
  plain = config_lib.with_defaults(c)
  final = config_lib.finalize(c)
  crest = POLICIES.defaults("crest")
  assert final.is_locked and final.policy.train_frac == 0.2
  assert set(final.policy.keys()) == {"name", *crest}
  assert final.policy.start_epoch is None and crest["start_epoch"] == 1
  # The placeholders leave the resolved config, and so the run id, as they were.
  assert config_lib.canonical_json(config_lib.with_defaults(final)) == (
      config_lib.canonical_json(plain))
  # An override of a field the file did not name is typed like its default.
  final.policy.start_epoch = 3
  with pytest.raises(TypeError):
    final.policy.check_anchor = 3
  assert config_lib.with_defaults(final).policy.start_epoch == 3
  final.policy.start_epoch = None
  # A policy built from the file's config directly reads a None field as unset, too.
  from robustdata.data.policies import resolve_fields
  assert resolve_fields(final.policy, crest) == {**crest, "train_frac": 0.2}
  # Switched to CRAIG: the shared start_epoch takes CRAIG's default (0, not CREST's 1), CREST's
  # other placeholders are dropped, and the field the file named stays an error for CRAIG.
  final.policy.name = "craig"
  switched = config_lib.with_defaults(final)
  assert switched.policy.start_epoch == 0 and "check_anchor" not in switched.policy
  assert set(switched.policy.keys()) == {"name", "train_frac", *POLICIES.defaults("craig")}
  with pytest.raises(ConfigError, match="train_frac is not a field of policy 'craig'"):
    POLICIES.get("craig")(switched, None, batch_size=8, seed=0, num_classes=10)


def test_objective_defaults_are_part_of_the_hash(monkeypatch):
  """An objective's DEFAULTS fill the section named like config.method (config.groupdro), so a
  changed default changes the run id; the objective reads the same dict."""
  from robustdata.registry import OBJECTIVES
  c = config_lib.base_config()
  with c.unlocked():
    c.method = "groupdro"
  resolved = config_lib.with_defaults(c)
  assert "groupdro" not in c and resolved.groupdro.step_size == 0.01
  assert config_lib.with_defaults(resolved) is resolved
  named = config_lib.base_config()
  with named.unlocked():
    named.method = "groupdro"
    named.groupdro = ml_collections.ConfigDict({"step_size": 0.01})
  assert config_lib.run_id(config_lib.with_defaults(named)) == config_lib.run_id(resolved)
  groupdro = OBJECTIVES.get("groupdro")
  monkeypatch.setitem(groupdro.DEFAULTS, "step_size", 0.02)
  assert config_lib.run_id(config_lib.with_defaults(c)) != config_lib.run_id(resolved)
  assert groupdro(c, num_groups=4, num_classes=2).step_size == 0.02
  assert groupdro(resolved, num_groups=4, num_classes=2).step_size == 0.01
  # Objectives without fields (erm) add no section.
  assert config_lib.with_defaults(config_lib.base_config()).keys() == (
      config_lib.base_config().keys())


def test_optional_field_is_settable_and_in_the_hash_only_when_set():
  from configs import quickstart
  config = quickstart.get_config()
  unset = config_lib.config_hash(config)
  assert config.train.conv is None and "conv" not in config_lib.to_dict(config)["train"]
  config.train.conv = "cpu"  # a locked config: the placeholder makes the field settable
  assert config_lib.config_hash(config) != unset
  assert config_lib.to_dict(config)["train"]["conv"] == "cpu"
  config.train.conv = None
  assert config_lib.config_hash(config) == unset
  config_lib.check_known_fields(config)  # known although base_config lacks it


def test_finalize_makes_optional_fields_of_nested_stages_settable():
  """A chain finalized once as a whole (one shared FieldReference across its stages): the
  upstream stages get the placeholders too, the reference stays shared, and unset ones leave
  the upstream hash as it was."""
  shared = ml_collections.FieldReference("", field_type=str)
  stages = []
  for name in ("up", "down"):
    c = config_lib.base_config()
    c.name = name
    c.data.data_dir = shared
    stages.append(c)
  up, down = stages
  with down.unlocked():
    down.up = up
  before = config_lib.config_hash(down.up)
  config = config_lib.finalize(down)
  assert config.up.train.conv is None and config.up.model.width is None
  assert config_lib.config_hash(config.up) == before
  config.up.train.conv = "xla"  # what --config.up.train.conv=xla does
  assert config_lib.config_hash(config.up) != before
  config.data.data_dir = "/data"
  assert config.up.data.data_dir == "/data"


# --- Display-only fields (config_lib.DISPLAY_FIELDS) do not change a run's id. --------------

def _overridden(config, **fields):
  config = copy.deepcopy(config)
  with config.unlocked():
    for key, value in fields.items():
      config.train[key] = value
  return config


@pytest.mark.parametrize("spec", ["configs/quickstart.py:smoke", "configs/pde/synthetic_erm.py",
                                  "configs/friendly_noise/bp_cifar10.py:smoke"])
def test_display_only_fields_do_not_change_the_run_id(spec):
  """Another progress style or log cadence (on the command line, or the progress 'none' a
  sweep sets) names the same run; a field that computes something still changes the id; the
  id read back from config.json is the same (`--reproduce`); upstream stages likewise."""
  config = validation.load_config_file(spec)
  run_id = config_lib.run_id(config_lib.resolve(config))
  for fields in ({"progress": "none"}, {"progress": "bar"}, {"log_every_steps": 7},
                 {"progress": "log", "log_every_steps": 1}):
    changed = config_lib.resolve(_overridden(config, **fields))
    assert config_lib.run_id(changed) == run_id, fields
    assert config_lib.run_id(config_lib.from_dict(config_lib.to_dict(changed))) == run_id
    assert config_lib.to_dict(changed)["train"].items() >= fields.items()  # config.json: live
  assert config_lib.run_id(config_lib.resolve(_overridden(config, epochs=3))) != run_id
  for key in config_lib.stage_sections(config):
    stage = config_lib.resolve(config[key])
    assert (config_lib.run_id(config_lib.resolve(_overridden(stage, progress="none")))
            == config_lib.run_id(stage))


def test_display_only_fields_hash_at_the_values_the_file_chose():
  """`finalize` records the file's values: the hash is that of the config with those values
  (which is how every id pinned before the rule was computed); without the record (a config
  that never went through `finalize`) the base config's values are hashed."""
  config = config_lib.resolve(validation.load_config_file("configs/pde/synthetic_erm.py"))
  assert (config.hashed_display.progress, config.hashed_display.log_every_steps) == ("log", 100)
  d = config_lib.to_dict(config)
  del d["hashed_display"]
  assert config_lib.canonical_json(config) == json.dumps(d, sort_keys=True, separators=(",", ":"))
  bare = config_lib.base_config()
  with bare.unlocked():
    bare.train.progress, bare.train.log_every_steps = "none", 3
  assert config_lib.config_hash(bare) == config_lib.config_hash(config_lib.base_config())
