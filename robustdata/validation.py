"""Declared valid ranges of every numeric config field, checked before anything compiles.

`RULES` maps a dotted field (`optim.learning_rate`, `policy.fraction`; `*` matches one name)
to a rule; `check_ranges(config)` walks a config and raises one `ConfigError` naming each field
that breaks its rule, its value and what is allowed. `check_data(config, data)` checks what
needs the loaded splits (an empty validation split that `eval.select_by` reads, ...);
`SELECT_BY` lists the metrics `eval.select_by` may name, with the direction that is better;
`parse_variants` parses the `:variant` argument of a config file.
"""

from __future__ import annotations

import abc
import fnmatch
import math
import numbers
from typing import Any, Iterable, Iterator, Optional, Sequence

from robustdata.registry import ConfigError

# Seeds reach numpy's SeedSequence (non-negative) and jax.random.PRNGKey, which keeps only the
# low 32 bits without x64 (seed 2**32 gives the key of seed 0), so a seed is a uint32.
SEED_MAX = 2**32 - 1

# The validation metrics `config.eval.select_by` may name (evaluate_split's scalars of the val
# split) and whether larger ('max') or smaller ('min') is better.
SELECT_BY = {
    "val_accuracy": "max",
    "val_loss": "min",
    "val_worst_group_accuracy": "max",
    "val_average_accuracy": "max",
}
_GROUP_METRICS = ("val_worst_group_accuracy", "val_average_accuracy")


def _fmt(x: float) -> str:
  if x in (math.inf, -math.inf):
    return "inf" if x > 0 else "-inf"
  return repr(x) if isinstance(x, float) and abs(x) < 1e6 else str(x)


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Rule(abc.ABC):
  """A rule: `problem(value)` is None when the value is allowed, else why it is not."""

  allowed: str = ""

  @abc.abstractmethod
  def problem(self, value: Any) -> Optional[str]:
    """None when `value` is allowed, else the reason it is not."""


class Range(Rule):
  """A finite number (an integer if `integer`) in [lo, hi], each end open unless inclusive."""

  def __init__(self, lo: float = -math.inf, hi: float = math.inf, *, lo_inclusive: bool = True,
               hi_inclusive: bool = True, integer: bool = False):
    self.lo, self.hi, self.integer = lo, hi, integer
    self.lo_inclusive, self.hi_inclusive = lo_inclusive, hi_inclusive
    kind = "an integer" if integer else "a finite number"
    if lo == -math.inf and hi == math.inf:
      self.allowed = kind
    else:
      left = "[" if lo_inclusive and lo != -math.inf else "("
      right = "]" if hi_inclusive and hi != math.inf else ")"
      self.allowed = f"{kind} in {left}{_fmt(lo)}, {_fmt(hi)}{right}"

  def problem(self, value: Any) -> Optional[str]:
    if self.integer:
      if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        return "is not an integer"
    elif not _is_number(value):
      return "is not a number"
    elif not math.isfinite(value):
      return "is not finite"
    low = value < self.lo or (value == self.lo and not self.lo_inclusive)
    high = value > self.hi or (value == self.hi and not self.hi_inclusive)
    if low or high:
      return "is out of range"
    return None


def Int(lo: float = -math.inf, hi: float = math.inf) -> Range:  # pylint: disable=invalid-name
  """An integer in [lo, hi]."""
  return Range(lo, hi, integer=True)


def Fraction(*, lo_inclusive: bool = True,  # pylint: disable=invalid-name
             hi_inclusive: bool = True) -> Range:
  """A number in [0, 1] (ends as given)."""
  return Range(0.0, 1.0, lo_inclusive=lo_inclusive, hi_inclusive=hi_inclusive)


NONNEG = Range(0.0)
POSITIVE = Range(0.0, lo_inclusive=False)
SEED = Int(0, SEED_MAX)
POS_INT = Int(1)
NONNEG_INT = Int(0)


class Flag(Rule):
  """A bool (True or False)."""

  allowed = "True or False"

  def problem(self, value: Any) -> Optional[str]:
    return None if isinstance(value, bool) else "is not a bool"


class Choice(Rule):
  """One of a fixed set of values."""

  def __init__(self, values: Iterable[Any]):
    self.values = tuple(values)
    self.allowed = repr(list(self.values))

  def problem(self, value: Any) -> Optional[str]:
    return None if isinstance(value, str) and value in self.values else "is not known"


class Nullable(Rule):  # pylint: disable=invalid-name
  """None, or a value `rule` allows."""

  def __init__(self, rule: Rule):
    self.rule = rule
    self.allowed = f"None or {rule.allowed}"

  def problem(self, value: Any) -> Optional[str]:
    return None if value is None else self.rule.problem(value)


class TupleOf(Rule):
  """A tuple (or list) whose every element `item` allows; `nonempty`, `increasing` (strictly)
  as asked. A scalar is refused (write a 1-tuple)."""

  def __init__(self, item: Rule, *, nonempty: bool = False, increasing: bool = False):
    self.item, self.nonempty, self.increasing = item, nonempty, increasing
    parts = ["a non-empty tuple" if nonempty else "a tuple", f"of {item.allowed}"]
    if increasing:
      parts.append("in strictly increasing order")
    self.allowed = " ".join(parts)

  def problem(self, value: Any) -> Optional[str]:
    if not isinstance(value, (tuple, list)):
      return "is not a tuple (write a 1-tuple as '(x,)')"
    if self.nonempty and not value:
      return "is empty"
    for i, v in enumerate(value):
      why = self.item.problem(v)
      if why is not None:
        return f"has element [{i}]={v!r} that {why}"
    if self.increasing and any(b <= a for a, b in zip(value, value[1:])):
      return "is not sorted"
    return None


class Text(Rule):
  """A string."""

  allowed = "a string"

  def problem(self, value: Any) -> Optional[str]:
    return None if isinstance(value, str) else "is not a string"


class _Classes(Rule):
  """config.data.classes: a captioned_shapes subset name, or spuco_digits' groups of digits."""

  allowed = ("a string (captioned_shapes) or a tuple of non-empty tuples of distinct digits "
             "0-9 (spuco_digits)")

  def problem(self, value: Any) -> Optional[str]:
    if isinstance(value, str):
      return None
    if not isinstance(value, (tuple, list)) or not value:
      return "is not a non-empty tuple of class groups"
    seen = []
    for group in value:
      if not isinstance(group, (tuple, list)) or not group:
        return f"has group {group!r} that is not a non-empty tuple"
      for d in group:
        if Int(0, 9).problem(d) is not None:
          return f"has class {d!r} that is not a digit 0-9"
        seen.append(d)
    return "repeats a class" if len(set(seen)) != len(seen) else None


class Section(Rule):
  """A config section (a ConfigDict): reached by `range_errors` only when the value is not."""

  allowed = "a section (ConfigDict) of fields"

  def problem(self, value: Any) -> Optional[str]:
    return "is not a section"


# The rules, by dotted field. Policy, data and model fields are keyed by field name: a name
# means the same thing in every component that reads it.
RULES: dict[str, Rule] = {
    # --- The base config (config_lib.base_config). ---
    **{section: Section() for section in ("data", "model", "optim", "train", "policy", "privacy",
                                          "eval", "contrastive", "poison", "groupdro", "dfr")},
    "seed": SEED,
    "data.crop_padding": NONNEG_INT,
    "data.val_fraction": Fraction(hi_inclusive=False),
    "data.test_fraction": Fraction(hi_inclusive=False),
    "data.split_seed": SEED,
    "data.upsample": POS_INT,
    "data.train_copies": NONNEG_INT,
    "data.label_noise": Fraction(hi_inclusive=False),
    "data.label_noise_kind": Choice(("symmetric", "asymmetric")),  # data/label_noise.py
    "data.subset_size": Fraction(lo_inclusive=False),
    "data.augment": TupleOf(Text()),
    "optim.learning_rate": NONNEG,
    "optim.momentum": Fraction(hi_inclusive=False),
    "optim.nesterov": Flag(),
    "optim.weight_decay": NONNEG,
    "optim.warmup_epochs": NONNEG,
    "optim.milestones": TupleOf(NONNEG, increasing=True),
    "optim.gamma": POSITIVE,
    "optim.label_smoothing": Fraction(),
    "optim.grad_clip_norm": NONNEG,
    "train.epochs": POS_INT,
    "train.batch_size": POS_INT,
    "train.eval_batch_size": POS_INT,
    "train.log_every_steps": POS_INT,
    "train.checkpoint_every_steps": POS_INT,
    "train.max_checkpoints_to_keep": POS_INT,
    "train.eval_every_epochs": POS_INT,
    "train.max_steps": NONNEG_INT,
    "train.distributed": Flag(),
    "train.progress": Choice(("auto", "bar", "log", "none")),
    "train.conv": Nullable(Choice(("auto", "xla", "cpu"))),  # config_lib.OPTIONAL_FIELDS
    "eval.select_by": Choice(("",) + tuple(SELECT_BY)),
    # --- config.privacy (config_lib.PRIVACY_DEFAULTS). ---
    "privacy.clip_norm": POSITIVE,
    "privacy.noise_multiplier": NONNEG,
    "privacy.target_epsilon": NONNEG,
    "privacy.delta": Fraction(lo_inclusive=False, hi_inclusive=False),
    "privacy.microbatch_size": NONNEG_INT,
    "privacy.per_layer": Flag(),
    "privacy.switch_epoch": Int(-1),
    "privacy.prune_sparsity": Fraction(hi_inclusive=False),
    "privacy.prune_start_epoch": NONNEG_INT,
    "privacy.prune_every_epochs": NONNEG_INT,
    # --- config.mask (config_lib.MASK_DEFAULTS; robustdata/privacy/masks.py). ---
    "mask": Section(),
    "mask.kind": Choice(("random", "magnitude")),
    "mask.density": Fraction(lo_inclusive=False),
    "mask.scope": Choice(("global", "layer")),
    "mask.start_epoch": NONNEG_INT,
    # --- Datasets (registry DATASETS defaults). ---
    "data.seed": SEED,
    "data.image_size": POS_INT,
    "data.context_length": Int(2),
    "data.min_count": POS_INT,
    "data.synonym_prob": Fraction(),
    "data.num_train": POS_INT,
    "data.num_val": NONNEG_INT,
    "data.num_test": NONNEG_INT,
    "data.num_downstream_train": NONNEG_INT,
    "data.num_downstream_test": NONNEG_INT,
    "data.max_per_split": NONNEG_INT,
    "data.noise": NONNEG,
    "data.n_train": POS_INT,
    "data.n_val": NONNEG_INT,
    "data.n_test": NONNEG_INT,
    "data.patch_dim": POS_INT,
    "data.num_patches": Int(3),
    "data.case": Int(1, 2),
    "data.core_scale": Nullable(NONNEG),
    "data.spurious_scale": Nullable(NONNEG),
    "data.noise_std": NONNEG,
    "data.spurious_correlation": Fraction(),
    "data.test_spurious_correlation": Nullable(Fraction()),
    "data.classes": _Classes(),
    "data.spurious_correlation_strength": Fraction(),
    "data.core_feature_noise": Fraction(),
    "data.val_balanced": Flag(),
    # --- Models (registry MODELS defaults). ---
    "model.hidden": TupleOf(POS_INT),
    "model.channels": TupleOf(POS_INT, nonempty=True),
    "model.dense": POS_INT,
    "model.width": Nullable(POS_INT),  # None: the MLP's / CNN's own shape (OPTIONAL_FIELDS)
    "model.num_filters": POS_INT,
    "model.patch_dim": POS_INT,
    "model.init_scale": NONNEG,
    "model.embed_dim": POS_INT,
    "model.cnn_widths": TupleOf(POS_INT, nonempty=True),
    "model.vit_patch_size": POS_INT,
    "model.vit_width": POS_INT,
    "model.vit_depth": POS_INT,
    "model.vit_heads": POS_INT,
    "model.text_width": POS_INT,
    "model.text_depth": POS_INT,
    "model.text_heads": POS_INT,
    "model.text_causal": Flag(),
    # --- Data policies (registry POLICIES DEFAULTS). ---
    "policy.fraction": Fraction(lo_inclusive=False),
    "policy.lag": POS_INT,
    "policy.start_epoch": NONNEG_INT,
    "policy.equal_num": Flag(),
    "policy.use_linear": Flag(),
    "policy.shuffle": Flag(),
    "policy.ascending": Flag(),
    "policy.train_frac": Fraction(lo_inclusive=False),
    "policy.random_subset_size": Fraction(lo_inclusive=False),
    "policy.num_minibatch_coreset": POS_INT,
    "policy.batch_num_mul": POS_INT,
    "policy.interval_mul": POSITIVE,
    "policy.check_thresh_factor": POSITIVE,
    "policy.check_size": NONNEG_INT,
    "policy.lazy_coresets": Flag(),
    "policy.drop_learned": Flag(),
    "policy.watch_interval": POS_INT,
    "policy.drop_interval": POS_INT,
    "policy.drop_thresh": NONNEG,
    "policy.min_train_size": NONNEG_INT,
    "policy.refresh_every": POS_INT,
    "policy.augment_weights": Flag(),
    "policy.num_ops": POS_INT,
    "policy.magnitude": Fraction(),
    "policy.stage1_epochs": POS_INT,
    "policy.upweight": Range(1.0),
    "policy.add_start": Int(-1),      # -1: never expand
    "policy.add_interval": POS_INT,
    "policy.add_num": NONNEG_INT,     # 0: spread the unused examples over the milestones
    "policy.subsample_cap": NONNEG_INT,
    "policy.with_replacement": Flag(),
    "policy.uniform_add": Flag(),
    "policy.same_across_class": Flag(),
    "policy.num_epochs": NONNEG_INT,
    "policy.sampling_power": NONNEG,  # spare
    "policy.inferred_powers": Flag(),
    "policy.num_positives": POS_INT,  # cnc
    "policy.num_negatives": POS_INT,
    "policy.subset_fraction": Fraction(lo_inclusive=False),  # epic (poisoning/epic.py)
    "policy.epic_every": POS_INT,
    "policy.epic_start_epoch": NONNEG_INT,
    "policy.epic_stop_epoch": Int(-1),  # -1: no last selection
    "policy.cluster_threshold": POS_INT,
    "policy.cumulative": Flag(),
    # --- Objectives (registry OBJECTIVES DEFAULTS; section named like config.method). ---
    "groupdro.step_size": NONNEG,
    "dfr.num_models": POS_INT,
    "dfr.c_grid": TupleOf(POSITIVE, nonempty=True),
    "dfr.standardize": Flag(),
    "dfr.tune_fraction": Fraction(lo_inclusive=False, hi_inclusive=False),
    "elr": Section(),
    "elr.beta": Fraction(hi_inclusive=False),
    "elr.lam": NONNEG,
    "mixup": Section(),
    "mixup.alpha": POSITIVE,
    "lff": Section(),
    "lff.q": Fraction(lo_inclusive=False),
    "lff.ema": Fraction(hi_inclusive=False),
    "cnc": Section(),
    "cnc.contrastive_weight": Fraction(),
    "cnc.temperature": POSITIVE,
    # --- Group inference (spurious/infer_stage.py INFERENCE_DEFAULTS; group_source.py). ---
    "inference": Section(),
    "inference.method": Choice(("jtt", "cluster", "spare", "eiil", "ssa", "cnc")),
    "inference.features": Choice(("logits", "probs", "features")),
    "inference.algorithm": Choice(("kmeans", "gmm")),
    "inference.min_clusters": Int(2),
    "inference.max_clusters": Int(2),
    "inference.silhouette_threshold": Range(-1.0, 1.0),
    "inference.high_sampling_power": POSITIVE,
    "inference.eiil_steps": POS_INT,
    "inference.eiil_lr": POSITIVE,
    "inference.seed": SEED,
    "inference.ssa_labelled_fraction": Fraction(lo_inclusive=False),
    "inference.ssa_select_fraction": Fraction(hi_inclusive=False),
    "inference.ssa_num_splits": POS_INT,
    "inference.ssa_threshold": Fraction(),
    "inference.ssa_input": Choice(("inputs", "features")),
    "inference.ssa_hidden": NONNEG_INT,
    "inference.ssa_steps": POS_INT,
    "inference.ssa_lr": POSITIVE,
    "inference.ssa_weight_decay": NONNEG,
    "inference.ssa_batch_size": POS_INT,
    "group_stage.trainer": Choice(("group_inference",)),
    # --- The contrastive trainer (contrastive/config.py). ---
    "contrastive.warmup_steps": NONNEG_INT,
    "contrastive.augment": Flag(),
    "contrastive.eval_max_images": NONNEG_INT,
    "contrastive.pool_size": POS_INT,
    "contrastive.break_epoch": POS_INT,
    "contrastive.clip_warmup_epochs": NONNEG_INT,
    "contrastive.drop_overflow": Flag(),
    "contrastive.phase_c_warmup": Flag(),
    "contrastive.safe_set": Nullable(Choice(("scored", "uniform"))),  # config_lib.OPTIONAL_FIELDS
    "contrastive.risky_pass": Nullable(Flag()),  # config_lib.OPTIONAL_FIELDS
    "contrastive.pool_prefill": Choice(("captions", "random")),
    "contrastive.eda_captions": Choice(("once", "epoch", "off")),
    "contrastive.aug_chain": Choice(("cross_aug", "small", "none")),
    "contrastive.inmodal_warmup": NONNEG_INT,
    "contrastive.multimodal_warmup": NONNEG_INT,
    "contrastive.in_lr": NONNEG,
    "contrastive.cross_lr": NONNEG,
    "contrastive.filter_lr": NONNEG,
    "contrastive.unimodal_pool_size": NONNEG_INT,
    "contrastive.safe_threshold": Fraction(lo_inclusive=False, hi_inclusive=False),
    "contrastive.safe_fraction_update": Fraction(),
    "contrastive.safe_fraction_cap": Fraction(lo_inclusive=False),
    "contrastive.pretrain_epochs": NONNEG_INT,
    "contrastive.finetune_lr": NONNEG,
    "contrastive.finetune_warmup_steps": NONNEG_INT,
    "contrastive.clean_subset_size": NONNEG_INT,
    "contrastive.clip_weight": NONNEG,
    "contrastive.inmodal_weight": NONNEG,
    "poison.kind": Choice(("none", "targeted", "backdoor", "both")),
    "poison.count": NONNEG_INT,
    "poison.rate": Fraction(hi_inclusive=False),
    "poison.num_targets": POS_INT,
    "poison.adversarial_class": Int(-1),  # -1: a random other class per target
    "poison.target_class": NONNEG_INT,
    "poison.patch_size": NONNEG_INT,      # 0: the trigger's default size
    "poison.seed": SEED,
    "poison.caption_source": Choice(("template", "data")),  # optional (contrastive/config.py)
    "contrastive.filter_warmup_epochs": POS_INT,
    "contrastive.keep_fraction": Fraction(lo_inclusive=False),
    "contrastive.refilter_every": NONNEG_INT,
}




def rule_for(path: str) -> Optional[Rule]:
  """The rule of dotted field `path` (exact key first, then `*` patterns); None if none."""
  if path in RULES:
    return RULES[path]
  for pattern, rule in RULES.items():
    if "*" in pattern and fnmatch.fnmatchcase(path, pattern):
      return rule
  return None


def _leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
  for key in config.keys():
    value = config[key]
    path = f"{prefix}{key}"
    if hasattr(value, "keys") and hasattr(value, "__getitem__"):
      yield from _leaves(value, path + ".")
    else:
      yield path, value


def range_errors(config: Any) -> list[str]:
  """One message per field of `config` that breaks its rule (fields without a rule pass)."""
  errors = []
  for path, value in _leaves(config):
    rule = rule_for(path)
    if rule is None:
      continue
    why = rule.problem(value)
    if why is not None:
      errors.append(f"config.{path}={value!r} {why}; allowed: {rule.allowed}")
  return errors


def check_ranges(config: Any) -> None:
  """Raises ConfigError listing every field of `config` outside its declared range."""
  errors = range_errors(config)
  if errors:
    raise ConfigError("\n".join(errors))


def check_data(config: Any, data: Any) -> None:
  """Checks that need the loaded `data` (DataSplits): a train split with examples, and the
  validation split `config.eval.select_by` (or DFR's held-out 'val') reads. Call it right
  after loading the data, before building the model."""
  name = config.data.name
  if len(data.train) == 0:
    raise ConfigError(f"config.data.name={name!r} gave an empty train split; check the "
                      "dataset's files and config.data")
  select_by = config.get("eval", {}).get("select_by", "") if hasattr(config, "get") else ""
  if select_by:
    if len(data.val) == 0:
      raise ConfigError(
          f"config.eval.select_by={select_by!r} needs a validation split, but config.data "
          f"(name={name!r}) gives an empty one; set config.data.val_fraction > 0 (or the "
          "dataset's val size), or config.eval.select_by='' to report the final model")
    if select_by in _GROUP_METRICS and (data.val.groups is None or not data.num_groups):
      raise ConfigError(
          f"config.eval.select_by={select_by!r} needs group labels, but config.data.name="
          f"{name!r} has none; allowed here: {['', 'val_accuracy', 'val_loss']}")
  if config.get("method") == "dfr":
    section = config.get("dfr") or {}
    held_out = section.get("held_out", "val") if hasattr(section, "get") else "val"
    split = data.val if held_out == "val" else data.train
    if len(split) == 0:
      raise ConfigError(f"config.method='dfr' refits on the {held_out!r} split "
                        f"(config.dfr.held_out), which config.data (name={name!r}) leaves "
                        "empty; set config.data.val_fraction > 0")


def parse_variants(arg: Optional[str], allowed: Sequence[str], what: str, *,
                   exclusive: Sequence[Sequence[str]] = ()) -> set[str]:
  """The comma-separated variant tokens of a config file's `arg` (None or '' -> none).

  Raises ConfigError for an unknown, empty or repeated token, naming `what` (the config file)
  and the allowed tokens; `exclusive` lists groups of which at most one token may be given."""
  text = "" if arg is None else arg
  if not isinstance(text, str):
    raise ConfigError(f"the variant {arg!r} of {what} is not a string; allowed tokens: "
                      f"{list(allowed)}, comma-separated")
  parts = text.split(",") if text else []
  bad = [t for t in parts if t not in allowed]
  if bad or any(parts.count(t) > 1 for t in parts):
    reason = (f"unknown token(s) {bad}" if bad else f"a repeated token in {parts}")
    raise ConfigError(f"the variant {text!r} of {what} has {reason}; allowed tokens: "
                      f"{list(allowed)}, comma-separated (or none)")
  tokens = set(parts)
  for group in exclusive:
    chosen = sorted(tokens & set(group))
    if len(chosen) > 1:
      raise ConfigError(f"the variant {text!r} of {what} names {chosen}; choose at most one "
                        f"of {list(group)}")
  return tokens


def load_config_file(spec: str):
  """The ConfigDict of `--config=<path>[:<variant>]`, or a ConfigError saying what is wrong
  with the path, the file (syntax errors, exceptions, no `get_config`) or the variant."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  path, *variant = spec.split(":", 1)
  where = f"--config={spec}"
  if not path:
    raise ConfigError(f"{where}: no config file path given")
  if not os.path.exists(path):
    raise ConfigError(f"{where}: {path!r} does not exist")
  if not os.path.isfile(path):
    raise ConfigError(f"{where}: {path!r} is not a file (a config is a .py file)")
  try:
    module_spec = importlib.util.spec_from_file_location("robustdata_config_check", path)
    if module_spec is None or module_spec.loader is None:
      raise ConfigError(f"{where}: {path!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  except ConfigError:
    raise
  except SyntaxError as e:
    raise ConfigError(f"{where}: syntax error in {path} at line {e.lineno}: {e.msg}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{where}: loading {path} raised {_describe(e, path)}") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"{where}: {path} defines no get_config(arg=None)")
  try:
    config = get_config(*variant)
  except ConfigError as e:
    raise ConfigError(f"{where}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{where}: get_config raised {_describe(e, path)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{where}: get_config returned {type(config).__name__}, not a ConfigDict")
  return config


def _describe(e: BaseException, path: str) -> str:
  """'Type: message (line L of path)' for an exception raised by a config file's code."""
  import os  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
           if os.path.abspath(f.filename) == os.path.abspath(path)]
  where = f" (line {lines[-1]} of {path})" if lines else ""
  return f"{type(e).__name__}: {e}{where}"


def tuple_override_problem(config: Any, field: str, text: str) -> Optional[str]:
  """Why the command-line override `--config.<field>=<text>` of a tuple-valued field is refused
  (None if it is a tuple or list literal): a scalar would silently become a 1-tuple."""
  import ast  # pylint: disable=g-import-not-at-top
  node = config
  for part in field.split("."):
    if not hasattr(node, "keys") or part not in node:
      return None  # an unknown field: the flag parser reports it
    node = node[part]
  if not isinstance(node, tuple):
    return None
  try:
    value = ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    value = text
  if isinstance(value, (tuple, list)):
    return None
  return (f"config.{field} is a tuple (now {node!r}), not a scalar; give a tuple literal, "
          f"e.g. --config.{field}=\"({value!r},)\" for one element or '()' for none")


def check_config(config: Any) -> None:
  """The checks of a run config that need neither devices nor data (the supervised and
  contrastive trainers' `validate` with one device, after `with_defaults`; the declared ranges
  for other trainers), for configs read from files: a malformed one (a missing section, a
  section that is a number) is a ConfigError too."""
  from robustdata import config_lib  # pylint: disable=g-import-not-at-top
  from robustdata.registry import TRAINERS  # pylint: disable=g-import-not-at-top
  try:
    trainer = config.get("trainer", "supervised")
    TRAINERS.get(trainer)
    resolved = config_lib.with_defaults(config)
    if trainer == "contrastive":
      from robustdata.contrastive import config as contrastive_config  # pylint: disable=g-import-not-at-top
      contrastive_config.validate(resolved, num_devices=1)
    elif trainer == "supervised":
      config_lib.validate(resolved, num_devices=1)
    else:  # a trainer with its own validation (run by the trainer): the ranges here
      check_ranges(resolved)
  except ConfigError:
    raise
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    raise ConfigError(f"not a valid run config ({type(e).__name__}: {e})") from None
