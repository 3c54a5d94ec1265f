"""The contrastive trainer's config: the `contrastive` and `poison` sections with their
defaults, their validation (one ConfigError naming the field, before anything compiles), and
the per-epoch phase plan each method's fields imply.
"""

from __future__ import annotations

import ml_collections

from robustdata.poisoning import triggers
from robustdata.registry import ConfigError

METHODS = ("clip", "roclip", "safeclip", "cleanclip", "filter")
# Optional config.poison fields: read with .get, so configs without them keep their run ids.
POISON_OPTIONAL = ("caption_source",)  # targeted captions: 'template' or 'data' (data.py)
# SafeCLIP's ablations, optional config.contrastive fields (config_lib.OPTIONAL_FIELDS: None, the
# method itself, is left out of the hash, so no run id changes); methods other than safeclip
# refuse a value. safe_set='uniform': each Phase C split's safe set is a uniform random draw of
# the size the scores chose (the poisons' share then equals the base rate); risky_pass=False:
# Phase C skips the unimodal pass on the risky pairs.
SAFECLIP_ABLATIONS = {"safe_set": "scored", "risky_pass": True}  # field: the method's value
# CleanCLIP's upstream stage (a stage is a run): `config.pretrained`, the whole config of a plain
# `clip` run whose final parameters CleanCLIP fine-tunes. The runner trains it first in the same
# workdir, or reuses it when finished; it is the alternative to pretrained_checkpoint (a path)
# and to pretrain_epochs > 0 (pre-training inside this run).
PRETRAINED_STAGE = "pretrained"

_COMMON = dict(
    warmup_steps=10,        # linear warm-up steps of each warm-up + cosine phase
    augment=False,          # cross_aug: image aug chain every step + one EDA caption per pair;
                            # SafeCLIP: its CLIP passes only (the unimodal loss always augments)
    probe_task="object",    # downstream task of the linear probe (captioned_shapes)
    eval_max_images=0,      # cap on images per evaluation set (0: all)
)
_METHOD_FIELDS = {
    "clip": {},
    "roclip": dict(
        pool_size=256,          # FIFO caption pool S (reference 21 845)
        break_epoch=2,          # K: epochs K, 2K, ... are matching epochs
        clip_warmup_epochs=0,   # plain-CLIP epochs before the first matching one (0: reference)
        pool_prefill="captions",  # 'captions' (real embeddings) or 'random' (reference N(0,1))
        drop_overflow=False,    # reference FIFO: drop the batch tail at the wrap-around
        aug_chain="cross_aug",  # image chain when augment: 'cross_aug' (reference) or 'small'
        eda_captions="once",    # caption when augment: one EDA view drawn 'once' per run
                                # (reference), redrawn every 'epoch', or 'off' (the original)
    ),
    "safeclip": dict(
        inmodal_warmup=5,       # Phase A epochs (unimodal on all pairs)
        multimodal_warmup=1,    # Phase B epochs (CLIP on all pairs at filter_lr)
        in_lr=5e-4,             # unimodal peak LR (Phase A schedule and Phase C risky pass)
        cross_lr=5e-4,          # CLIP peak LR of the Phase C safe pass
        filter_lr=5e-6,         # constant LR of Phase B
        unimodal_pool_size=256,  # NN pools of the unimodal loss; 0: SimCLR-style (no pools)
        pool_prefill="captions",
        safe_threshold=0.9,     # first split: GMM posterior >= threshold
        safe_fraction_update=0.01,  # r <- min(r + update, cap) after every split
        safe_fraction_cap=0.85,
        aug_chain="cross_aug",  # image chain of every view: 'cross_aug' (reference) or 'small'
        phase_c_warmup=True,    # each Phase C pass warms up linearly over its first
                                # warmup_steps steps, as the reference's new Phase C schedules
                                # do; False: the half-cosine alone, from the peak LR
    ),
    "cleanclip": dict(
        pretrained_checkpoint="",  # a finished `clip` run directory; '' pre-trains in this run
        pretrain_epochs=0,      # epochs of plain CLIP on the (poisoned) data before fine-tuning
        finetune_lr=1e-5,       # peak LR of the fine-tuning phase (fresh AdamW state)
        finetune_warmup_steps=50,
        clean_subset_size=0,    # clean pairs fine-tuned on (0: every clean training pair)
        clip_weight=1.0,        # lambda_1
        inmodal_weight=1.0,     # lambda_2
    ),
    # A cheap data-curation baseline: CLIP on all pairs for `filter_warmup_epochs`, then score
    # every pair by its image-caption cosine under that model and keep training plain CLIP on
    # the `keep_fraction` best-aligned pairs. A poisoned pair joins an image to a caption of
    # another class, so once the clean majority is learned (poisons are <= 1% of the pairs)
    # it scores low; unlike SafeCLIP there is no GMM, no unimodal loss and no risky pass.
    "filter": dict(
        filter_warmup_epochs=1,  # CLIP epochs on all pairs before the first scoring
        keep_fraction=0.9,      # share of pairs kept (the highest cosines)
        refilter_every=0,       # re-score all pairs every this many epochs (0: score once)
    ),
}


def contrastive_defaults(method: str) -> ml_collections.ConfigDict:
  """The `config.contrastive` section of `method` with its defaults."""
  if method not in METHODS:
    raise ConfigError(f"config.method={method!r} is not known for trainer 'contrastive'; "
                      f"allowed values: {list(METHODS)}")
  return ml_collections.ConfigDict({**_COMMON, **_METHOD_FIELDS[method]})


def poison_defaults() -> ml_collections.ConfigDict:
  """The `config.poison` section (no attack by default)."""
  return ml_collections.ConfigDict(dict(
      kind="none",         # none, targeted, backdoor, both (each attack gets `count` pairs)
      count=0,             # poisoned pairs per attack; 0: use `rate`
      rate=0.0,            # poisoned pairs per attack as a fraction of the clean train split
      num_targets=1,       # targeted: target images (held-out val images), count split evenly
      adversarial_class=-1,  # targeted: class of every target (-1: a random other class each)
      trigger="badnet",    # backdoor: badnet, blended, sig, warped
      target_class=0,      # backdoor: the class triggered images are captioned with
      patch_size=0,        # badnet patch in pixels (0: 16 px at 224 scaled)
      location="random",   # badnet: random or corner
      seed=0,              # poisons, targets and trigger noise
  ))


def require(cond: bool, message: str) -> None:
  if not cond:
    raise ConfigError(message)


def validate(config, *, num_devices: int) -> None:
  """One clear ConfigError naming the field before anything compiles."""
  from robustdata import config_lib
  from robustdata.registry import DATASETS, MODELS

  config_lib.check_known_fields(config)
  require(config.method in METHODS, f"config.method={config.method!r} is not known for trainer "
         f"'contrastive'; allowed values: {list(METHODS)}")
  for section in ("data", "model", "optim", "train", "contrastive", "poison"):
    require(section in config, f"config.{section} is missing; build contrastive configs with "
           "robustdata.contrastive.config.contrastive_defaults / poison_defaults")
  from robustdata import validation  # pylint: disable=g-import-not-at-top
  validation.check_ranges(config)  # declared ranges and choices (robustdata/validation.py)
  select_by = config.eval.get("select_by", "") if "eval" in config else ""
  require(not select_by, f"config.eval.select_by={select_by!r}; the contrastive trainer reports "
         "the final model (allowed: '')")
  DATASETS.get(config.data.name)
  require(config.model.name == "clip", f"config.model.name={config.model.name!r}; the "
         "contrastive trainer needs 'clip'")
  MODELS.get(config.model.name)
  require(config.optim.name == "adamw", f"config.optim.name={config.optim.name!r}; the "
         "contrastive trainer uses 'adamw' (CLIP's AdamW with masked weight decay)")
  require(config.optim.warmup_epochs == 0, f"config.optim.warmup_epochs={config.optim.warmup_epochs}"
         "; the contrastive trainer warms up over config.contrastive.warmup_steps")
  require(config.policy.name == "full", f"config.policy.name={config.policy.name!r}; the "
         "contrastive trainer plans its own batches (allowed: 'full')")
  require(config.privacy.mode == "sgd", f"config.privacy.mode={config.privacy.mode!r}; allowed: 'sgd'")
  for field in ("batch_size", "eval_batch_size"):
    require(config.train[field] % num_devices == 0, f"config.train.{field}={config.train[field]} "
           f"is not divisible by the number of devices ({num_devices})")

  c, expected = config.contrastive, contrastive_defaults(config.method)
  for key in c.keys():
    if key in SAFECLIP_ABLATIONS and c[key] is None:
      continue  # an unset optional field (a placeholder from config_lib.finalize)
    if key in SAFECLIP_ABLATIONS:
      require(config.method == "safeclip", f"config.contrastive.{key}={c[key]!r} is a SafeCLIP "
             f"ablation; method {config.method!r} allows only None")
      continue
    require(key in expected, f"config.contrastive.{key} is not a field of method "
           f"{config.method!r}; allowed fields: {sorted(expected.keys())}")
  for key in expected.keys():
    require(key in c, f"config.contrastive.{key} is missing (method {config.method!r})")
  b, epochs = config.train.batch_size, config.train.epochs
  if config.method == "roclip":
    require(c.pool_size >= b, f"config.contrastive.pool_size={c.pool_size} must be >= "
           f"config.train.batch_size={b} (the pool holds a whole batch)")
  elif config.method == "safeclip":
    require(c.inmodal_warmup + c.multimodal_warmup < epochs, f"config.train.epochs={epochs} must "
           f"exceed inmodal_warmup + multimodal_warmup = {c.inmodal_warmup + c.multimodal_warmup}"
           " (the filtering phase needs an epoch)")
    require(c.unimodal_pool_size == 0 or c.unimodal_pool_size >= b,
           f"config.contrastive.unimodal_pool_size={c.unimodal_pool_size} must be 0 or >= "
           f"config.train.batch_size={b}")
  elif config.method == "cleanclip":
    require(c.pretrain_epochs < epochs, f"config.contrastive.pretrain_epochs={c.pretrain_epochs} "
           f"must be < config.train.epochs={epochs} (fine-tuning needs an epoch)")
    staged = PRETRAINED_STAGE in config
    require(bool(c.pretrained_checkpoint) + (c.pretrain_epochs > 0) + staged == 1,
           "config.contrastive: set exactly one of pretrained_checkpoint (a finished clip run "
           f"directory), pretrain_epochs > 0 or config.{PRETRAINED_STAGE} (a clip stage); got "
           f"pretrained_checkpoint={c.pretrained_checkpoint!r}, pretrain_epochs="
           f"{c.pretrain_epochs}" + (f", config.{PRETRAINED_STAGE}" if staged else ""))
    if staged:
      _check_pretrained_stage(config)
  elif config.method == "filter":
    require(c.filter_warmup_epochs < epochs, "config.contrastive.filter_warmup_epochs="
           f"{c.filter_warmup_epochs} must be < config.train.epochs={epochs} (training on the "
           "kept pairs needs an epoch)")

  if config.method != "cleanclip":
    require(PRETRAINED_STAGE not in config, f"config.{PRETRAINED_STAGE} is CleanCLIP's upstream "
           f"clip stage; method {config.method!r} takes none")
  p, ref = config.poison, poison_defaults()
  for key in p.keys():
    require(key in ref or key in POISON_OPTIONAL, f"config.poison.{key} is not a known field; "
           f"allowed: {sorted(ref.keys()) + list(POISON_OPTIONAL)}")
  if p.kind != "none":
    require(p.count > 0 or 0 < p.rate < 1, f"config.poison: set count > 0 or rate in (0, 1) for "
           f"kind={p.kind!r}; got count={p.count}, rate={p.rate}")
    if p.kind in ("backdoor", "both"):
      triggers.check_trigger(p.trigger)


def _check_pretrained_stage(config) -> None:
  """config.pretrained must be a plain CLIP run of this run's model (its parameters are
  restored onto this run's state)."""
  from robustdata import config_lib  # pylint: disable=g-import-not-at-top
  stage, field = config[PRETRAINED_STAGE], f"config.{PRETRAINED_STAGE}"
  require(config_lib.is_stage(stage), f"{field} must be a whole run config (trainer, train, name);"
         f" got the fields {sorted(stage.keys()) if hasattr(stage, 'keys') else stage!r}")
  require(stage.trainer == "contrastive" and stage.get("method") == "clip",
         f"{field}: trainer={stage.trainer!r}, method={stage.get('method')!r}; CleanCLIP "
         "fine-tunes a plain CLIP run (allowed: trainer 'contrastive', method 'clip')")
  mine, theirs = config_lib.resolve(config).model, config_lib.resolve(stage).model
  differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
  if differ:
    k = differ[0]
    raise ConfigError(f"{field}.model differs from config.model in {differ}: {field}.model.{k}="
                      f"{theirs.get(k)!r}, config.model.{k}={mine.get(k)!r}; CleanCLIP restores "
                      "the stage's parameters, so the models must be equal")


def pretrained_dir(config, run_dir: str) -> str:
  """The directory CleanCLIP restores its starting parameters from: pretrained_checkpoint, or
  the run directory of the upstream stage config.pretrained ('' when it pre-trains itself)."""
  if config.contrastive.get("pretrained_checkpoint"):
    return config.contrastive.pretrained_checkpoint
  if PRETRAINED_STAGE in config:
    from robustdata import runner  # pylint: disable=g-import-not-at-top
    return runner.stage_dir(config, PRETRAINED_STAGE, run_dir)
  return ""


def safeclip_ablation(config, field: str):
  """The value of SafeCLIP's ablation `field` (SAFECLIP_ABLATIONS' value when unset)."""
  value = config.contrastive.get(field)
  return SAFECLIP_ABLATIONS[field] if value is None else value


def eda_captions(config) -> str:
  """RoCLIP's `contrastive.eda_captions` ('once' for the methods without the field)."""
  return config.contrastive.get("eda_captions", "once")


def augments_captions(config) -> bool:
  """Whether `augment` replaces CLIP/RoCLIP captions by an EDA view ('off' keeps them)."""
  return bool(config.contrastive.augment) and eda_captions(config) != "off"


def epoch_phase(config, epoch: int) -> str:
  """The phase of 0-based `epoch`: clip, roclip_match, unimodal, filter, safe, finetune,
  filtered (CLIP on the pairs the 'filter' method kept)."""
  c = config.contrastive
  if config.method == "roclip":
    match = (epoch + 1) % c.break_epoch == 0 and epoch >= c.clip_warmup_epochs
    return "roclip_match" if match else "clip"
  if config.method == "safeclip":
    if epoch < c.inmodal_warmup:
      return "unimodal"
    return "filter" if epoch < c.inmodal_warmup + c.multimodal_warmup else "safe"
  if config.method == "cleanclip":
    return "clip" if epoch < c.pretrain_epochs else "finetune"
  if config.method == "filter":
    return "clip" if epoch < c.filter_warmup_epochs else "filtered"
  return "clip"
