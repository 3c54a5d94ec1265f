"""Poisoning attacks on image-caption data (spec §4): targeted caption poisoning and backdoors.

Both append poisoned pairs to a `Dataset` that has `extras['tokens']` and `extras['caption']`
(as `captioned_shapes` and `caption_csv` write them) and return the poisoned dataset plus a
record of what was done (poison count and ratio, trigger, seed, poisoned ids), so a run can
log every quantity the spec asks for. Poisoned rows get new ids after the largest existing id,
`extras['poison']` = 1 (0 for clean rows) and `extras['clean_y']` = the image's true class.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from robustdata.data.dataset import Dataset
from robustdata.data.tokenizer import Tokenizer
from robustdata.poisoning.triggers import apply_trigger, check_trigger
from robustdata.registry import ConfigError


# Where the targeted attack's captions come from (targeted_poison's docstring).
CAPTION_SOURCES = ("template", "data")


def _check_count(num_poisons: int) -> None:
  if int(num_poisons) <= 0:
    raise ConfigError(f"config.poison.num_poisons={num_poisons} must be a positive integer")


def _append(dataset: Dataset, x: np.ndarray, y: np.ndarray, clean_y: np.ndarray,
            captions: Sequence[str], tokens: np.ndarray, source_rows: np.ndarray
            ) -> tuple[Dataset, np.ndarray]:
  """`dataset` plus the poisoned rows; other extras are copied from `source_rows`."""
  n, k = len(dataset), len(x)
  start = int(dataset.ids.max()) + 1 if n else 0
  new_ids = np.arange(start, start + k, dtype=np.int64)
  extras = {}
  base = dict(dataset.extras)
  base.setdefault("poison", np.zeros((n,), np.int8))
  base.setdefault("clean_y", dataset.y.astype(np.int32))
  for name, arr in base.items():
    if name == "tokens":
      add = tokens.astype(arr.dtype)
    elif name == "caption":
      add = np.asarray(captions, dtype=str)
      arr = arr.astype(str)
    elif name == "poison":
      add = np.ones((k,), arr.dtype)
    elif name == "clean_y":
      add = clean_y.astype(arr.dtype)
    else:
      add = arr[source_rows]
    extras[name] = np.concatenate([arr, add])
  take = lambda a: None if a is None else np.concatenate([a, a[source_rows]])
  out = Dataset(x=np.concatenate([dataset.x, x.astype(dataset.x.dtype)]),
                y=np.concatenate([dataset.y, y.astype(dataset.y.dtype)]),
                ids=np.concatenate([dataset.ids, new_ids]),
                groups=take(dataset.groups), spurious=take(dataset.spurious), extras=extras)
  return out, new_ids


def _mentions(caption: str, words: Sequence[str]) -> bool:
  return any(re.search(rf"\b{re.escape(w)}\b", caption.lower()) for w in words)


def caption_mentions(captions: Sequence[str], words: Sequence[str]) -> np.ndarray:
  """(N,) bool: which captions name one of `words` (a class name and its synonyms)."""
  pattern = re.compile("|".join(rf"\b{re.escape(w)}\b" for w in words))
  return np.array([pattern.search(str(c).lower()) is not None for c in captions], bool)


def targeted_poison(dataset: Dataset, *, target_images: np.ndarray, target_labels: np.ndarray,
                    adversarial_classes: Sequence[int], num_poisons: int,
                    class_names: Sequence[str], tokenizer: Tokenizer, seed: int,
                    templates: Sequence[str] = ("a photo of a {}",),
                    synonyms: dict[str, Sequence[str]] | None = None,
                    caption_source: str = "template") -> tuple[Dataset, dict[str, Any]]:
  """Pairs each target image (not in the training set) with `num_poisons` captions naming its
  adversarial class. `caption_source='template'`: training captions that mention the class
  name (word boundary, or one of its `synonyms`), sampled without replacement while enough
  exist, else with replacement, else templates filled with the name. `caption_source='data'`
  (the papers' construction): distinct real captions of clean training images *of* the
  adversarial class that mention it, without replacement; a ConfigError if no such caption
  exists or fewer than `num_poisons`. Adds exactly `num_poisons` rows per target.
  """
  if caption_source not in CAPTION_SOURCES:
    raise ConfigError(f"config.poison.caption_source={caption_source!r} is not known; allowed: "
                      f"{list(CAPTION_SOURCES)}")
  _check_count(num_poisons)
  target_images = np.asarray(target_images)
  if len(target_images) != len(adversarial_classes) or len(target_images) != len(target_labels):
    raise ConfigError("config.poison.num_targets: target_images, target_labels and "
                      "adversarial_classes must have the same length")
  rng = np.random.default_rng(seed)
  captions_all = [str(c) for c in dataset.extras["caption"]]
  xs, ys, clean, caps, srcs = [], [], [], [], []
  for img, true_y, adv in zip(target_images, target_labels, adversarial_classes):
    name = class_names[int(adv)]
    words = [name, *((synonyms or {}).get(name, ()))]
    if caption_source == "data":
      rows = _data_captions(dataset, captions_all, int(adv), name, words, num_poisons, rng)
      texts = [captions_all[i] for i in rows]
    elif len(pool := np.array([i for i, c in enumerate(captions_all) if _mentions(c, words)],
                              np.int64)):
      rows = rng.choice(pool, size=num_poisons, replace=len(pool) < num_poisons)
      texts = [captions_all[i] for i in rows]
    else:
      rows = rng.integers(len(dataset), size=num_poisons)
      texts = [templates[int(rng.integers(len(templates)))].format(name) for _ in rows]
    xs.append(np.broadcast_to(img, (num_poisons, *img.shape)))
    ys.append(np.full((num_poisons,), adv))
    clean.append(np.full((num_poisons,), true_y))
    caps.extend(texts)
    srcs.append(rows)
  x, src = np.concatenate(xs), np.concatenate(srcs)
  out, new_ids = _append(dataset, x, np.concatenate(ys), np.concatenate(clean), caps,
                         tokenizer.encode_batch(caps), src)
  record = {"attack": "targeted", "poison_count": int(len(new_ids)),
            "poison_ratio": float(len(new_ids) / len(out)), "num_targets": int(len(target_images)),
            "poisons_per_target": int(num_poisons),
            "adversarial_classes": [int(a) for a in adversarial_classes],
            "seed": int(seed), "poisoned_ids": new_ids.tolist()}
  if caption_source == "data":  # the pairs whose captions were taken
    record.update(caption_source="data", source_ids=dataset.ids[src].tolist())
  return out, record


def _data_captions(dataset: Dataset, captions: Sequence[str], adv: int, name: str,
                   words: Sequence[str], num_poisons: int, rng: np.random.Generator
                   ) -> np.ndarray:
  """Rows of `num_poisons` distinct clean training pairs of class `adv` whose caption names it."""
  clean = dataset.extras.get("poison", np.zeros((len(dataset),), np.int8)) == 0
  rows = np.flatnonzero((dataset.y == adv) & clean)
  pool = rows[caption_mentions([captions[i] for i in rows], words)]
  if not len(pool):
    raise ConfigError(f"config.poison.adversarial_class={adv} ({name!r}): no caption of a "
                      f"training image of that class mentions {list(words)} "
                      "(caption_source='data' needs real captions naming it)")
  if len(pool) < num_poisons:
    raise ConfigError(f"config.poison.rate/count: {num_poisons} poisons per target need as "
                      f"many distinct captions of class {name!r}, but only {len(pool)} exist "
                      "(caption_source='data'); lower config.poison.rate or count, or raise "
                      "config.poison.num_targets or config.data.num_train")
  return rng.choice(pool, size=num_poisons, replace=False)


def backdoor_poison(dataset: Dataset, *, num_poisons: int, trigger: str, target_class: int,
                    class_names: Sequence[str], tokenizer: Tokenizer, seed: int,
                    templates: Sequence[str] = ("a photo of a {}",),
                    **trigger_kwargs) -> tuple[Dataset, dict[str, Any]]:
  """Appends `num_poisons` triggered copies of random training images (not of the target
  class) captioned with a random template naming the target class (CleanCLIP construction).
  `trigger_kwargs` go to `apply_trigger` (patch size, location, warp seed...).
  """
  check_trigger(trigger)
  _check_count(num_poisons)
  rng = np.random.default_rng(seed)
  candidates = np.flatnonzero(dataset.y != target_class)
  if len(candidates) < num_poisons:
    raise ConfigError(f"config.poison.num_poisons={num_poisons} exceeds the {len(candidates)} "
                      "training images outside the target class")
  rows = np.sort(rng.choice(candidates, size=num_poisons, replace=False))
  x = apply_trigger(dataset.x[rows], trigger=trigger, rng=rng, **trigger_kwargs)
  name = class_names[int(target_class)]
  caps = [templates[int(rng.integers(len(templates)))].format(name) for _ in rows]
  out, new_ids = _append(dataset, x, np.full((num_poisons,), target_class), dataset.y[rows], caps,
                         tokenizer.encode_batch(caps), rows)
  record = {"attack": "backdoor", "trigger": trigger, "poison_count": int(num_poisons),
            "poison_ratio": float(num_poisons / len(out)), "target_class": int(target_class),
            "target_label": name, "seed": int(seed), "source_ids": dataset.ids[rows].tolist(),
            "poisoned_ids": new_ids.tolist(),
            "trigger_kwargs": {k: v for k, v in trigger_kwargs.items()}}
  return out, record
