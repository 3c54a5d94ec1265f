"""The poisoned image-caption training pairs of a contrastive run and the attacks' evaluation
sets, built from `config.poison` (the attacks themselves: `clip_attacks`, `triggers`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from robustdata.contrastive.config import require
from robustdata.data import records
from robustdata.data.dataset import Dataset, DataSplits
from robustdata.poisoning import clip_attacks, triggers
from robustdata.registry import ConfigError


def _require_in_memory(config, split: str, x) -> None:
  """The attacks edit (train) or stamp (test) a whole split in host memory: a lazy split must
  be below records.MATERIALIZE_LIMIT_BYTES; above it, a ConfigError naming the fields."""
  if not records.is_lazy(x) or x.nbytes <= records.MATERIALIZE_LIMIT_BYTES:
    return
  raise ConfigError(
      f"config.poison.kind={config.poison.kind!r} needs the whole {split} split in host memory, "
      f"but config.data.name={config.data.name!r} is read lazily and its {split} split "
      f"({x.shape} {x.dtype}, {x.nbytes / 2**30:.1f} GiB) is above records."
      f"MATERIALIZE_LIMIT_BYTES ({records.MATERIALIZE_LIMIT_BYTES / 2**30:.1f} GiB); set "
      "config.poison.kind='none' or use a smaller split")


def _num_poisons(p, n_train: int) -> int:
  return int(p.count) if p.count > 0 else int(math.floor(p.rate * n_train))


def caption_source(config, info: dict[str, Any]) -> str:
  """The targeted attack's caption source: `config.poison.caption_source` when the config holds
  it (an optional field, so configs without it keep their run ids), else the dataset's
  preference (`info['poison_caption_source']`; captioned_scenes: 'data'), else 'template'."""
  source = config.poison.get("caption_source") or info.get("poison_caption_source", "template")
  require(source in clip_attacks.CAPTION_SOURCES, f"config.poison.caption_source={source!r} is "
         f"not known; allowed: {list(clip_attacks.CAPTION_SOURCES)}")
  return source


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
  require(n > 0, f"config.poison.rate={p.rate} gives {p.rate} x {len(train)} training pairs = "
         f"{p.rate * len(train):g} -> 0 poisons; raise the rate to >= {1 / len(train):.2g} or set "
         "config.poison.count")
  source = caption_source(config, info)
  _require_in_memory(config, "train", train.x)  # the poisons are appended to the train split
  if p.kind in ("backdoor", "both"):
    _require_in_memory(config, "test", data.test.x)  # every test image gets the trigger
  rng = np.random.default_rng(np.random.SeedSequence([p.seed, 61]))
  if p.kind in ("targeted", "both"):
    per_target = n // p.num_targets
    require(per_target > 0, f"config.poison: {n} poisons for num_targets={p.num_targets} targets "
           "leaves none per target (lower num_targets or raise rate/count)")
    eligible = np.arange(len(data.val))
    if source == "data" and p.adversarial_class >= 0:  # a target is never of its adversarial class
      eligible = np.flatnonzero(data.val.y != p.adversarial_class)
    require(len(eligible) >= p.num_targets, f"config.poison.num_targets={p.num_targets} exceeds "
           f"the {len(eligible)} val images the targets are drawn from (config.data.num_val="
           f"{len(data.val)})")
    rows = np.sort(eligible[rng.choice(len(eligible), size=p.num_targets, replace=False)])
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
        synonyms=info.get("synonyms"), caption_source=source)
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
