"""Host side of the contrastive trainer: the `contrastive` and `poison` config sections and
their validation, the poisoned training data, the per-epoch phase plan of each method, and the
evaluations of the results contract (zero-shot, linear probe, targeted and backdoor ASR).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import ml_collections
import numpy as np

from robustdata.contrastive import augment as augment_lib
from robustdata.data.caption_augment import eda_tokens
from robustdata.data.dataset import Dataset, DataSplits
from robustdata.poisoning import clip_attacks, triggers
from robustdata.registry import ConfigError

METHODS = ("clip", "roclip", "safeclip", "cleanclip")
EDA_CAPTIONS = ("once", "epoch", "off")  # RoCLIP's caption view when augment (see caption_views)
POISON_KINDS = ("none", "targeted", "backdoor", "both")

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
           "robustdata.contrastive.experiment.contrastive_defaults / poison_defaults")
  DATASETS.get(config.data.name)
  require(config.model.name == "clip", f"config.model.name={config.model.name!r}; the "
         "contrastive trainer needs 'clip'")
  MODELS.get(config.model.name)
  require(config.optim.name == "adamw", f"config.optim.name={config.optim.name!r}; the "
         "contrastive trainer uses 'adamw' (CLIP's AdamW with masked weight decay)")
  require(config.optim.learning_rate >= 0, f"config.optim.learning_rate="
         f"{config.optim.learning_rate} must be >= 0")
  require(config.optim.warmup_epochs == 0, f"config.optim.warmup_epochs={config.optim.warmup_epochs}"
         "; the contrastive trainer warms up over config.contrastive.warmup_steps")
  require(config.policy.name == "full", f"config.policy.name={config.policy.name!r}; the "
         "contrastive trainer plans its own batches (allowed: 'full')")
  require(config.privacy.mode == "sgd", f"config.privacy.mode={config.privacy.mode!r}; allowed: 'sgd'")
  for field in ("batch_size", "eval_batch_size", "epochs", "log_every_steps",
                "checkpoint_every_steps", "eval_every_epochs"):
    v = config.train[field]
    require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
           f"config.train.{field}={v!r} must be a positive int")
  for field in ("batch_size", "eval_batch_size"):
    require(config.train[field] % num_devices == 0, f"config.train.{field}={config.train[field]} "
           f"is not divisible by the number of devices ({num_devices})")
  require(config.train.progress in ("auto", "bar", "log", "none"),
         f"config.train.progress={config.train.progress!r}; allowed: auto, bar, log, none")

  c, expected = config.contrastive, contrastive_defaults(config.method)
  for key in c.keys():
    require(key in expected, f"config.contrastive.{key} is not a field of method "
           f"{config.method!r}; allowed fields: {sorted(expected.keys())}")
  for key in expected.keys():
    require(key in c, f"config.contrastive.{key} is missing (method {config.method!r})")
  require(isinstance(c.augment, bool), f"config.contrastive.augment={c.augment!r} must be a bool")
  require(c.warmup_steps >= 0, f"config.contrastive.warmup_steps={c.warmup_steps} must be >= 0")
  require(c.eval_max_images >= 0, f"config.contrastive.eval_max_images={c.eval_max_images} must be >= 0")
  b, epochs = config.train.batch_size, config.train.epochs
  if "aug_chain" in c:
    require(c.aug_chain in augment_lib.CHAINS, f"config.contrastive.aug_chain={c.aug_chain!r}; "
           f"allowed: {sorted(augment_lib.CHAINS)}")
  if config.method == "roclip":
    require(c.break_epoch > 0, f"config.contrastive.break_epoch={c.break_epoch} must be a "
           "positive int (every K-th epoch matches)")
    require(c.clip_warmup_epochs >= 0, f"config.contrastive.clip_warmup_epochs="
           f"{c.clip_warmup_epochs} must be >= 0")
    require(c.pool_size >= b, f"config.contrastive.pool_size={c.pool_size} must be >= "
           f"config.train.batch_size={b} (the pool holds a whole batch)")
    require(c.pool_prefill in ("captions", "random"), f"config.contrastive.pool_prefill="
           f"{c.pool_prefill!r}; allowed: captions, random")
    require(c.eda_captions in EDA_CAPTIONS, f"config.contrastive.eda_captions="
           f"{c.eda_captions!r}; allowed: {', '.join(EDA_CAPTIONS)}")
  elif config.method == "safeclip":
    require(c.inmodal_warmup >= 0 and c.multimodal_warmup >= 0,
           "config.contrastive.inmodal_warmup and multimodal_warmup must be >= 0")
    require(c.inmodal_warmup + c.multimodal_warmup < epochs, f"config.train.epochs={epochs} must "
           f"exceed inmodal_warmup + multimodal_warmup = {c.inmodal_warmup + c.multimodal_warmup}"
           " (the filtering phase needs an epoch)")
    require(c.unimodal_pool_size == 0 or c.unimodal_pool_size >= b,
           f"config.contrastive.unimodal_pool_size={c.unimodal_pool_size} must be 0 or >= "
           f"config.train.batch_size={b}")
    require(c.pool_prefill in ("captions", "random"), f"config.contrastive.pool_prefill="
           f"{c.pool_prefill!r}; allowed: captions, random")
    require(0 < c.safe_threshold < 1, f"config.contrastive.safe_threshold={c.safe_threshold} "
           "must be in (0, 1)")
    require(0 < c.safe_fraction_cap <= 1, f"config.contrastive.safe_fraction_cap="
           f"{c.safe_fraction_cap} must be in (0, 1]")
    require(c.safe_fraction_update >= 0, "config.contrastive.safe_fraction_update must be >= 0")
  elif config.method == "cleanclip":
    require(c.pretrain_epochs >= 0, f"config.contrastive.pretrain_epochs={c.pretrain_epochs} must be >= 0")
    require(c.pretrain_epochs < epochs, f"config.contrastive.pretrain_epochs={c.pretrain_epochs} "
           f"must be < config.train.epochs={epochs} (fine-tuning needs an epoch)")
    require(bool(c.pretrained_checkpoint) != (c.pretrain_epochs > 0),
           "config.contrastive: set exactly one of pretrained_checkpoint (a finished clip run "
           f"directory) or pretrain_epochs > 0; got pretrained_checkpoint="
           f"{c.pretrained_checkpoint!r}, pretrain_epochs={c.pretrain_epochs}")
    require(c.clean_subset_size >= 0, "config.contrastive.clean_subset_size must be >= 0")

  p, ref = config.poison, poison_defaults()
  for key in p.keys():
    require(key in ref, f"config.poison.{key} is not a known field; allowed: {sorted(ref.keys())}")
  require(p.kind in POISON_KINDS, f"config.poison.kind={p.kind!r} is not known; allowed: "
         f"{list(POISON_KINDS)}")
  if p.kind != "none":
    require(p.count > 0 or 0 < p.rate < 1, f"config.poison: set count > 0 or rate in (0, 1) for "
           f"kind={p.kind!r}; got count={p.count}, rate={p.rate}")
    require(p.num_targets > 0, f"config.poison.num_targets={p.num_targets} must be positive")
    if p.kind in ("backdoor", "both"):
      triggers.check_trigger(p.trigger)


# --- Data. -----------------------------------------------------------------------------------


def _num_poisons(p, n_train: int) -> int:
  return int(p.count) if p.count > 0 else int(math.floor(p.rate * n_train))


def poison_train(config, data: DataSplits) -> tuple[Dataset, dict[str, Any], dict[str, Any]]:
  """(poisoned train split, record for results.json, evaluation sets of the attacks).

  Targets of the targeted attack are held-out val images (never trained on); backdoor
  evaluation images are the test images of other classes with the trigger stamped.
  """
  p, train, info = config.poison, data.train, data.info
  record: dict[str, Any] = {"kind": p.kind, "poison_count": 0, "poison_ratio": 0.0}
  attack_eval: dict[str, Any] = {}
  if p.kind == "none":
    return train, record, attack_eval
  for need in ("class_names", "tokenizer"):
    require(need in info, f"config.poison.kind={p.kind!r} needs a dataset with class names "
           f"(config.data.name={config.data.name!r} has no {need!r}); poison CSV data offline")
  names, tok = info["class_names"], info["tokenizer"]
  n = _num_poisons(p, len(train))
  rng = np.random.default_rng(np.random.SeedSequence([p.seed, 61]))
  if p.kind in ("targeted", "both"):
    per_target = n // p.num_targets
    require(per_target > 0, f"config.poison: {n} poisons for num_targets={p.num_targets} targets "
           "leaves none per target")
    require(len(data.val) >= p.num_targets, f"config.poison.num_targets={p.num_targets} exceeds "
           f"the {len(data.val)} val images the targets are drawn from")
    rows = np.sort(rng.choice(len(data.val), size=p.num_targets, replace=False))
    true = data.val.y[rows]
    if p.adversarial_class >= 0:
      require(p.adversarial_class < len(names), f"config.poison.adversarial_class="
             f"{p.adversarial_class} must be < {len(names)} classes")
      adv = np.full(len(rows), p.adversarial_class)
    else:
      adv = (true + rng.integers(1, len(names), size=len(rows))) % len(names)
    train, rec = clip_attacks.targeted_poison(
        train, target_images=data.val.x[rows], target_labels=true, adversarial_classes=adv,
        num_poisons=per_target, class_names=names, tokenizer=tok, seed=p.seed,
        templates=info.get("prompt_templates", ("a photo of a {}",)),
        synonyms=info.get("synonyms"))
    rec["target_ids"] = data.val.ids[rows].tolist()
    record["targeted"] = rec
    attack_eval["targeted"] = {"x": data.val.x[rows], "adversarial": adv}
  if p.kind in ("backdoor", "both"):
    require(0 <= p.target_class < len(names), f"config.poison.target_class={p.target_class} "
           f"must be in [0, {len(names)})")
    kwargs = {"location": p.location}
    if p.patch_size:
      kwargs["patch_size"] = int(p.patch_size)
    train, rec = clip_attacks.backdoor_poison(
        train, num_poisons=n, trigger=p.trigger, target_class=p.target_class, class_names=names,
        tokenizer=tok, seed=p.seed, templates=info.get("prompt_templates", ("a photo of a {}",)),
        **kwargs)
    record["backdoor"] = rec
    test = data.test
    stamped = triggers.apply_trigger(test.x, trigger=p.trigger,
                                     rng=np.random.default_rng([p.seed, 62]), **kwargs)
    attack_eval["backdoor"] = {"x": stamped, "y": test.y, "target_class": p.target_class}
  record["poison_count"] = int(train.extras["poison"].sum())
  record["poison_ratio"] = record["poison_count"] / len(train)
  return train, record, attack_eval


def eda_captions(config) -> str:
  """RoCLIP's `contrastive.eda_captions` ('once' for the methods without the field)."""
  return config.contrastive.get("eda_captions", "once")


def augments_captions(config) -> bool:
  """Whether `augment` replaces CLIP/RoCLIP captions by an EDA view ('off' keeps them)."""
  return bool(config.contrastive.augment) and eda_captions(config) != "off"


def caption_views(config, data: DataSplits, train: Dataset, *,
                  epoch: int = 0) -> dict[str, np.ndarray]:
  """EDA caption views: 'eda1' and, for SafeCLIP, 'eda2'. Computed once per run (as the
  reference) unless RoCLIP's `eda_captions='epoch'`, which draws them anew for each `epoch`
  (seeded by it, so a resumed run gets the same views). Empty when neither augmentation nor
  a unimodal term needs them, or with `eda_captions='off'`."""
  augment = augments_captions(config)
  needs = {"clip": 1 if augment else 0, "roclip": 1 if augment else 0,
           "safeclip": 2, "cleanclip": 1}[config.method]
  if not needs:
    return {}
  tok = data.info.get("tokenizer")
  require(tok is not None, f"config.data.name={config.data.name!r} provides no tokenizer for EDA")
  per_epoch = [epoch] if eda_captions(config) == "epoch" else []
  out = {}
  for i in range(1, needs + 1):
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 63, i, *per_epoch]))
    out[f"eda{i}"] = eda_tokens(train.extras["tokens"], rng, tokenizer=tok,
                                synonyms=data.info.get("synonyms", {}))
  return out


def step_tokens(config, kind: str, tokens: np.ndarray,
                views: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """The caption arrays fed to a step of `kind` as (`tokens`, `tokens_aug`).

  SafeCLIP's unimodal step always compares the two EDA views. Its CLIP pass (`cross_clip`,
  Phases B and C) uses them too when `augment` (the reference cross_aug) and otherwise the
  original captions, so that with `augment=False` it is plain CLIP on the un-augmented pair
  while the unimodal loss keeps its views.
  """
  augment = config.contrastive.augment
  if kind == "cleanclip":
    return tokens, views["eda1"]
  if kind == "unimodal" or (kind == "cross_clip" and augment):
    return views["eda1"], views["eda2"]
  first = views["eda1"] if augments_captions(config) else tokens
  return first, first


# --- Phases. ---------------------------------------------------------------------------------


def epoch_phase(config, epoch: int) -> str:
  """The phase of 0-based `epoch`: clip, roclip_match, unimodal, filter, safe, finetune."""
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
  return "clip"


def batches_of(indices: np.ndarray, batch_size: int, *, drop_last: bool) -> list[np.ndarray]:
  """Consecutive batches of `indices` (the last one short unless dropped)."""
  n = len(indices)
  stop = (n // batch_size) * batch_size if drop_last else n
  return [indices[i:i + batch_size] for i in range(0, stop, batch_size)]


def cosine(peak: float, t: float) -> float:
  """Half-cosine from `peak` at t=0 to 0 at t=1 (constant 0 after)."""
  return 0.5 * peak * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


# --- Evaluation. -----------------------------------------------------------------------------


def evaluate(config, data: DataSplits, attack_eval: dict[str, Any], *, encode_image, encode_text,
             image_features, with_probe: bool = True) -> dict[str, Optional[float]]:
  """Zero-shot top-1 on test, linear probe on the downstream task, targeted/backdoor ASR.

  Metrics a dataset cannot support (no class names, prompts or downstream task) are None.
  """
  from robustdata.evals import attacks as attack_evals
  from robustdata.evals.linear_probe import linear_probe
  from robustdata.evals.zero_shot import class_embeddings, zero_shot_accuracy

  info, cap = data.info, config.contrastive.eval_max_images or None
  out: dict[str, Optional[float]] = {"zero_shot_accuracy": None, "linear_probe_accuracy": None,
                                     "targeted_asr": None, "backdoor_asr": None}
  if "class_names" not in info or "prompt_templates" not in info:
    return out
  cls = class_embeddings(encode_text, info["tokenizer"], info["class_names"],
                         info["prompt_templates"])
  zs = zero_shot_accuracy(encode_image(data.test.x[:cap]), data.test.y[:cap], cls, topk=(1, 5))
  out["zero_shot_accuracy"], out["zero_shot_top5"] = zs["top1"], zs["top5"]
  if "targeted" in attack_eval:
    t = attack_eval["targeted"]
    out.update(attack_evals.targeted_asr(encode_image(t["x"]), t["adversarial"], cls))
  if "backdoor" in attack_eval:
    b = attack_eval["backdoor"]
    out.update(attack_evals.backdoor_asr(encode_image(b["x"][:cap]), b["y"][:cap], cls,
                                         target_class=b["target_class"]))
  task = info.get("downstream", {}).get(config.contrastive.probe_task)
  if with_probe and task is not None:
    tr, te = task["train"], task["test"]
    out.update(linear_probe(image_features(tr.x[:cap]), tr.y[:cap], image_features(te.x[:cap]),
                            te.y[:cap]))
  return out
