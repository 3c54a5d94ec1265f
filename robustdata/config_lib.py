"""Configs: the base config every experiment starts from, the config hash, and validation.

A config file builds on `base_config()`, changes what its experiment needs and returns
`finalize(config)`, so every run has the same sections, a field that exists nowhere is an
error, and every field its dataset, model and data policy read can be set from the command
line. The config hash is the sha256 of the canonical JSON of the resolved config (first 12 hex
characters), with the display-only train fields (DISPLAY_FIELDS) at the values the config file
chose; the run directory is `<workdir>/<config.name>-<hash>`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Mapping

import ml_collections

from robustdata.registry import (DATASETS, GRAD_RULES, MODELS, OBJECTIVES, POLICIES,
                                 TRAINERS, ConfigError)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


# config.privacy: the gradient rule (spec §6), read by train/grad_rules.py and privacy/plan.py
# through `privacy_field`; every config holds all of it (base_config), so all of it is hashed.
PRIVACY_DEFAULTS: dict[str, Any] = {
    "mode": "sgd",            # sgd (plain), clip_only, noise_only, dp_sgd
    "clip_norm": 1.0,         # C: per-example L2 clipping threshold (clip_only, dp_sgd)
    "noise_multiplier": 1.0,  # sigma: noise std sigma*C on the summed gradient
    "target_epsilon": 0.0,    # > 0: calibrate sigma to this epsilon over the run's steps
    "delta": 1e-5,            # target delta; must be < 1/N (N = train examples)
    "sampling": "poisson",    # poisson | shuffle (fixed-size batches); sets the accounting and
                              # must match config.policy.name for dp_sgd
    "accountant": "rdp",      # rdp | pld
    "clipping": "vmap",       # vmap (per-example grads) | ghost (norms without them) | loop
    "microbatch_size": 0,     # vmap: per-example grads this many rows at a time; 0 = all
    "per_layer": False,       # clip each layer to C / sqrt(L) instead of the whole gradient
    "switch_epoch": -1,       # >= 0: from this epoch on train with switch_to_mode
    "switch_to_mode": "",     # the late-phase mode (early / late window analysis)
    "prune_sparsity": 0.0,    # magnitude pruning of conv/dense kernels; 0 disables
    "prune_scope": "global",  # global | layer (the sparsity within each kernel)
    "prune_start_epoch": 0,   # first pruning: masks from the parameters at this epoch
    "prune_every_epochs": 0,  # 0: prune once; k > 0: re-prune every k epochs with the sparsity
                              # ramping linearly to prune_sparsity at the last event
}


def privacy_field(section: Any, name: str) -> Any:
  """Field `name` of a privacy section (ConfigDict, dict or None); PRIVACY_DEFAULTS[name] when
  it is missing or None."""
  value = section.get(name) if section is not None else None
  return PRIVACY_DEFAULTS[name] if value is None else value


def base_config() -> ml_collections.ConfigDict:
  """All sections and fields of a run with their defaults. Comments say what each field does."""
  c = ml_collections.ConfigDict()
  c.name = "run"            # names the run directory (<name>-<hash>)
  c.seed = 0                # the one seed: params init, data order, augmentation, noise
  c.method = "erm"          # objective: per-example loss coefficients (erm, groupdro, ...)
  c.trainer = "supervised"  # the loop: supervised (classification) or a family's own trainer

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"    # a registered source (robustdata/data/sources.py)
  c.data.data_dir = ""      # local tfds data_dir for real datasets; never downloaded
  c.data.augment = ()       # jit-able train augmentations in order: 'crop', 'flip'
  c.data.crop_padding = 4
  c.data.val_fraction = 0.1
  c.data.test_fraction = 0.2  # used by sources without an official test split
  c.data.split_seed = 0     # the train/val/test split is fixed by this, not by `seed`
  c.data.upsample = 1       # digits: integer upsampling of the 8x8 images
  c.data.train_copies = 0   # digits: extra shifted + noised copies of every train image
  c.data.label_noise = 0.0  # digits: fraction of train labels flipped to another class

  c.model = ml_collections.ConfigDict()
  c.model.name = "cnn"      # mlp, cnn, resnet20, resnet18, ...
  c.model.norm = "none"     # batch, group or none (conv models)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"      # sgd, adam, adamw
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9    # sgd only; 0 disables
  c.optim.nesterov = False
  c.optim.weight_decay = 5e-4  # sgd/adam: L2 added to the gradient; adamw: decoupled
  c.optim.schedule = "cosine"  # constant, cosine (to 0 at the last epoch), step (milestones)
  c.optim.warmup_epochs = 0.0  # linear warm-up from 0 over this many epochs
  c.optim.milestones = ()   # step schedule: epochs (counted after warm-up) where lr *= gamma
  c.optim.gamma = 0.1
  c.optim.label_smoothing = 0.0
  c.optim.grad_clip_norm = 0.0  # global-norm clipping of the batch gradient; 0 disables

  c.train = ml_collections.ConfigDict()
  c.train.epochs = 10
  c.train.batch_size = 128  # global batch; must be divisible by the number of devices
  c.train.eval_batch_size = 512
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 500  # also at every epoch end and at the end of the run
  c.train.max_checkpoints_to_keep = 2
  c.train.eval_every_epochs = 1
  c.train.max_steps = 0     # stop early after this many steps (0: no limit); for smoke tests
  c.train.progress = "auto"  # auto (bar on a TTY, log lines otherwise), bar, log, none
  c.train.distributed = False  # call jax.distributed.initialize() (multi-host)

  c.policy = ml_collections.ConfigDict()
  c.policy.name = "full"    # data policy: full, random_subset, ...; its own fields are added
                            # here by configs (e.g. policy.fraction for random_subset)

  c.privacy = ml_collections.ConfigDict(dict(PRIVACY_DEFAULTS))

  c.eval = ml_collections.ConfigDict()
  c.eval.select_by = ""     # '' reports the final model; else a val metric to pick the best
                            # epoch by, e.g. 'val_accuracy' or 'val_worst_group_accuracy'
  return c


# Optional fields: known everywhere, in no base config, and in a run's config (and its hash)
# only when set. Each changes how a run executes, not what it computes beyond float rounding
# (train.conv: robustdata/models/conv.py). `finalize` adds them as None placeholders so the
# command line can set them; a None one is left out of the dict, the JSON and the hash.
# model.width is the exception: the base width k of a width sweep (robustdata/models/__init__.py);
# the ResNets register it with a default (so it is always set and hashed for them), the MLP and
# the CNN keep their `hidden` / `channels` while it is None. The contrastive ones are SafeCLIP's
# ablations (robustdata/contrastive/config.py, SAFECLIP_ABLATIONS): None is the method itself.
OPTIONAL_FIELDS: dict[str, type] = {"train.conv": str, "model.width": int,
                                    "contrastive.safe_set": str, "contrastive.risky_pass": bool}


# config.mask: a parameter mask over the conv/dense kernels (robustdata/privacy/masks.py), with or
# without DP. A config holds the section only when it masks, so other run ids do not change;
# `with_defaults` completes a section a config holds, so all of it is hashed.
MASK_DEFAULTS: dict[str, Any] = {
    "kind": "random",     # random (uniform, from config.seed) | magnitude (smallest |w| pruned)
    "density": 1.0,       # d in (0, 1]: the fraction of kernel coordinates kept; 1 = no mask
    "scope": "global",    # global (over all kernels at once) | layer (d within each kernel)
    "start_epoch": 0,     # the mask is drawn at this epoch's start (0: at init), then fixed
}


def _unrecorded_display(config) -> bool:
  return DISPLAY_SECTION not in config or any(
      _unrecorded_display(config[k]) for k in stage_sections(config))


def _record_display(config) -> None:
  """Records the display-only train fields of `config` and of its nested upstream stages in
  their hashed_display sections, where not recorded yet (in place)."""
  if DISPLAY_SECTION not in config:
    with config.unlocked():
      config[DISPLAY_SECTION] = ml_collections.ConfigDict(
          {f: config.train[f] for f in DISPLAY_FIELDS if f in config.get("train", {})})
  for key in stage_sections(config):
    _record_display(config[key])


# Display-only fields of config.train: how a run reports, not what it computes. They do not
# change a run's id: `finalize` records the values the config file chose in
# config.hashed_display, and the hash reads those in place of the live fields. So
# `--config.train.progress=bar`, a sweep's progress "none" or another log cadence name the same
# run as the command line, and every id pinned before this rule (when the live values were
# hashed, always equal to the file's) is unchanged. A config that never went through `finalize`
# (no hashed_display) hashes them at the base config's values. config.json records both.
DISPLAY_FIELDS = ("progress", "log_every_steps")
DISPLAY_SECTION = "hashed_display"


def _pin_display(d: dict[str, Any]) -> None:
  """Replaces the display-only train fields of the config dict `d` (and of the upstream stages
  nested in it) by their hashed values, removing the hashed_display record."""
  pins = d.pop(DISPLAY_SECTION, None)
  if pins is None:
    pins = {f: base_config().train[f] for f in DISPLAY_FIELDS}
  train = d.get("train")
  if isinstance(train, dict):
    train.update({f: pins[f] for f in DISPLAY_FIELDS if f in train and f in pins})
  for value in d.values():
    if is_stage(value):
      _pin_display(value)


def to_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  """A plain, JSON-ready dict (tuples become lists; unset optional fields left out)."""
  raw = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  out = json.loads(json.dumps(raw, sort_keys=True, default=_json_default))
  _drop_unset_optional(out)
  return out


def _drop_unset_optional(d: dict[str, Any]) -> None:
  """Removes None OPTIONAL_FIELDS from `d` and from the upstream stages nested in it."""
  for dotted in OPTIONAL_FIELDS:
    section, field = dotted.split(".")
    if isinstance(d.get(section), dict) and d[section].get(field, 0) is None:
      del d[section][field]
  for value in d.values():
    if isinstance(value, dict):
      _drop_unset_optional(value)


def _json_default(obj):
  if isinstance(obj, (tuple, set)):
    return list(obj)
  if hasattr(obj, "tolist"):
    return obj.tolist()
  raise TypeError(f"config value {obj!r} of type {type(obj).__name__} is not JSON serialisable")


def canonical_json(config) -> str:
  """The JSON that is hashed: `to_dict(config)` with the display-only fields at their hashed
  values (DISPLAY_FIELDS)."""
  d = to_dict(config)
  _pin_display(d)
  return json.dumps(d, sort_keys=True, separators=(",", ":"))


def config_hash(config) -> str:
  """sha256 of the canonical JSON of the config, first 12 hex characters."""
  return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]


def finalize(config):
  """What a config file's get_config returns: `config` with the chosen dataset's and model's
  registered defaults written into config.data / config.model, and the data policy's other
  fields as typed placeholders (None) in config.policy, locked.

  ml_collections only overrides fields the loaded config holds, so without this a field the
  file leaves at its default (say model.vit_depth or policy.lag) could not be set with
  `--config.model.vit_depth=...`. The run's hash does not change: `with_defaults` writes the
  same values at run time anyway. Policy fields stay None rather than taking the policy's
  defaults because `--config.policy.name` may switch to another policy: at run time
  `with_defaults` gives every None policy field the chosen policy's default and drops those it
  does not have, so no field or default of the file's policy is left behind (two policies can
  share a field name with different defaults, e.g. start_epoch). Unset OPTIONAL_FIELDS are
  None placeholders too, left out of the hash, in the upstream stages nested in `config` as
  well (`--config.poisons.train.conv=xla` on a chain finalized once as a whole). The
  display-only fields' values are recorded in config.hashed_display (DISPLAY_FIELDS) unless a
  first `finalize` recorded them already."""
  config = with_defaults(config, sections=("data", "model"))
  if _unrecorded_display(config):
    config = copy.deepcopy(config)
    _record_display(config)
  absent = _absent_optional(config)
  if absent:
    config = copy.deepcopy(config)  # one copy of the whole chain: shared references stay shared
    for stages, section, field in absent:
      stage = config
      for key in stages:
        stage = stage[key]
      with stage.unlocked():
        stage[section][field] = ml_collections.config_dict.placeholder(
            OPTIONAL_FIELDS[f"{section}.{field}"])
  if _supervised(config) and "name" in config.get("policy", {}):
    fields = {k: v for k, v in POLICIES.defaults(config.policy.name).items()
              if k not in config.policy and v is not None}
    if fields:
      config = copy.deepcopy(config)
      with config.unlocked():
        for key, value in fields.items():
          config.policy[key] = ml_collections.config_dict.placeholder(type(value))
  return config.lock()


def _absent_optional(config, stages: tuple[str, ...] = ()
                     ) -> list[tuple[tuple[str, ...], str, str]]:
  """(path of stage keys, section, field) of each OPTIONAL_FIELDS field that `config` or an
  upstream stage nested in it lacks, so `--config.poisons.train.conv=...` reaches a nested stage
  the config file did not finalize on its own."""
  absent = [(stages, *d.split(".")) for d in OPTIONAL_FIELDS
            if d.split(".")[0] in config and d.split(".")[1] not in config[d.split(".")[0]]]
  for key in stage_sections(config):
    absent += _absent_optional(config[key], (*stages, key))
  return absent


# The trainers that build data policies and objectives (the supervised task and its subclasses).
SUPERVISED_TRAINERS = ("supervised", "poison_victim")


def _supervised(config) -> bool:
  """Only the supervised trainers build data policies and objectives."""
  return config.get("trainer", "supervised") in SUPERVISED_TRAINERS


def with_defaults(config, sections=("data", "model", "policy", "objective", "mask")):
  """`config` with the declared defaults of its components written into their sections.

  Datasets and models register the fields they read with defaults
  (`DATASETS.register(name, defaults=...)`, likewise MODELS), data policies and objectives
  declare theirs (`Policy.DEFAULTS`; an objective's `DEFAULTS` fill the section named like
  config.method, e.g. config.groupdro; supervised trainer only); each is merged when it is
  built. Without this step a config that leaves a field at its default would not name it, so
  its hash would not change when the default does and a run pinned to a hash could silently
  change. A policy field left None (a placeholder from `finalize`) takes the chosen policy's
  default, or is dropped if that policy has no such field. `runner.run` hashes the returned
  config, and it is what config.json records. A config.mask section is completed with
  MASK_DEFAULTS, and a None OPTIONAL_FIELDS model field (model.width) takes the model's
  registered default if it has one. A copy is returned when fields are added. An unknown
  component name is a ConfigError naming the field. `sections` limits which of data, model,
  policy, objective and mask are completed."""
  missing: dict[str, dict[str, Any]] = {}
  unset: list[str] = []  # None policy fields: placeholders from `finalize`
  for section, registry in (("data", DATASETS), ("model", MODELS), ("policy", POLICIES)):
    if section == "policy" and not _supervised(config):
      continue  # the other trainers do not build data policies
    if section in sections and section in config and "name" in config[section]:
      defaults = registry.defaults(config[section].name)
      have = config[section]
      if section == "policy":
        unset = [k for k in have.keys() if k != "name" and have[k] is None]
      missing[section] = {k: v for k, v in defaults.items() if k not in have or k in unset
                          or (have[k] is None and f"{section}.{k}" in OPTIONAL_FIELDS)}
  method = config.get("method")
  if "objective" in sections and _supervised(config) and method in OBJECTIVES:
    # An objective reads its own section, config.<method> (e.g. config.groupdro.step_size).
    have = config.get(method) or {}
    missing[method] = {k: v for k, v in OBJECTIVES.defaults(method).items() if k not in have}
  if "mask" in sections and isinstance(config.get("mask"), ml_collections.ConfigDict):
    missing["mask"] = {k: v for k, v in MASK_DEFAULTS.items() if k not in config.mask}
  if not any(missing.values()) and not unset:
    return config
  out = copy.deepcopy(config)
  with out.unlocked():
    for key in unset:
      del out.policy[key]  # a typed placeholder: rewritten below if the policy has the field
    for section, fields in missing.items():
      if fields and section not in out:
        out[section] = ml_collections.ConfigDict()
      for key, value in fields.items():
        out[section][key] = value
  return out


def resolve(config):
  """The run's config: `config` with every registered default of its data source, model, data
  policy and objective written in (`with_defaults`), and so is every upstream stage nested in
  it (`stage_sections`); privacy and the contrastive sections are complete already
  (base_config, contrastive_defaults). `runner.run` resolves once and hashes the result;
  trainers receive it resolved. Resolving a resolved config returns it as is."""
  out = with_defaults(config)
  for key in stage_sections(out):
    stage = resolve(out[key])
    if stage is not out[key]:
      out = copy.deepcopy(out) if out is config else out
      with out.unlocked():
        out[key] = stage
  return out


def stage_sections(config) -> list[str]:
  """The sections of `config` that are whole configs of upstream stages (a stage is a run: a
  downstream stage names its upstream by config, e.g. the poisons a victim trains on)."""
  return [k for k, v in config.items()
          if isinstance(v, ml_collections.ConfigDict) and is_stage(v)]


def is_stage(value) -> bool:
  """Whether `value` (a ConfigDict or the dict of one in config.json) is a whole config of a
  stage: it has a trainer, a train section and a name."""
  return hasattr(value, "keys") and {"trainer", "train", "name"} <= set(value.keys())


def is_resolved(config) -> bool:
  return resolve(config) is config


def run_id(config) -> str:
  """`<name>-<hash>`, the name made a safe file name (`run_dir.safe_name`: a plain identifier
  stays as it is; `/`, `..` and the like cannot leave the workdir)."""
  from robustdata.run_dir import safe_name  # pylint: disable=g-import-not-at-top
  return f"{safe_name(config.name)}-{config_hash(config)}"


def from_dict(d: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A ConfigDict from a dict read from config.json (lists of scalars become tuples)."""
  def convert(v):
    if isinstance(v, Mapping):
      return ml_collections.ConfigDict({k: convert(x) for k, x in v.items()})
    if isinstance(v, list):
      return tuple(convert(x) for x in v)
    return v
  return convert(d)


def check_known_fields(config, reference=None, path: str = "config") -> None:
  """Raises ConfigError for a field of a core section that the base config does not have.

  Sections `policy`, `privacy` and `method_args`-style sections of method families hold
  method-specific fields and are checked by their owners.
  """
  reference = base_config() if reference is None else reference
  open_sections = {"policy", "privacy", "data", "model", "eval"}
  for key in config.keys():
    if key not in reference:
      if f"{path.removeprefix('config.')}.{key}" in OPTIONAL_FIELDS:
        continue
      if path == "config":
        continue  # a method family's own top-level section (validated by that family)
      raise ConfigError(f"{path}.{key} is not a known field; allowed fields: "
                        f"{sorted(reference.keys())}")
    value, ref = config[key], reference[key]
    if isinstance(ref, ml_collections.ConfigDict) and path == "config" and key not in open_sections:
      if not isinstance(value, (ml_collections.ConfigDict, Mapping)):
        raise ConfigError(f"{path}.{key} must be a section, got {value!r}")
      check_known_fields(value, ref, f"{path}.{key}")


def validate(config, *, num_devices: int) -> None:
  """Stops with one clear ConfigError before anything compiles."""
  check_known_fields(config)
  TRAINERS.get(config.get("trainer", "supervised"))
  for section in ("data", "model", "optim", "train", "policy", "privacy", "eval"):
    if section not in config:
      raise ConfigError(f"config.{section} is missing; start configs from "
                        "robustdata.config_lib.base_config()")
  DATASETS.get(config.data.name)
  MODELS.get(config.model.name)
  POLICIES.get(config.policy.name)
  OBJECTIVES.get(config.method)
  GRAD_RULES.get(config.privacy.mode)
  if config.optim.name not in OPTIMIZERS:
    raise ConfigError(f"config.optim.name={config.optim.name!r} is not known; allowed values: "
                      f"{list(OPTIMIZERS)}")
  if config.optim.schedule not in SCHEDULES:
    raise ConfigError(f"config.optim.schedule={config.optim.schedule!r} is not known; allowed "
                      f"values: {list(SCHEDULES)}")
  _positive(config, "train.batch_size", int)
  _positive(config, "train.eval_batch_size", int)
  _positive(config, "train.epochs", int)
  _positive(config, "train.log_every_steps", int)
  _positive(config, "train.checkpoint_every_steps", int)
  _positive(config, "train.eval_every_epochs", int)
  if config.optim.learning_rate < 0:
    raise ConfigError(f"config.optim.learning_rate={config.optim.learning_rate} must be >= 0")
  for field in ("batch_size", "eval_batch_size"):
    value = config.train[field]
    if value % num_devices:
      raise ConfigError(
          f"config.train.{field}={value} is not divisible by the number of devices "
          f"({num_devices}); allowed values: multiples of {num_devices}")
  from robustdata import validation  # pylint: disable=g-import-not-at-top
  validation.check_ranges(config)  # every field's declared range (robustdata/validation.py)


def _positive(config, dotted: str, kind: type) -> None:
  section, field = dotted.split(".")
  value = config[section][field]
  if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f"config.{dotted}={value!r} must be a positive {kind.__name__}")
