"""The contrastive trainer's data: the EDA caption views, the caption arrays each step kind is
fed, epoch batches, and the 'filter' baseline's kept pairs. The poisoned pairs:
`poisoning/clip_data.py`."""

from __future__ import annotations

import numpy as np

from robustdata.contrastive.config import augments_captions, eda_captions, require
from robustdata.data.caption_augment import eda_tokens
from robustdata.data.dataset import Dataset, DataSplits


def caption_views(config, data: DataSplits, train: Dataset, *,
                  epoch: int = 0) -> dict[str, np.ndarray]:
  """EDA caption views: 'eda1' and, for SafeCLIP, 'eda2'. Computed once per run (as the
  reference) unless RoCLIP's `eda_captions='epoch'`, which draws them anew for each `epoch`
  (seeded by it, so a resumed run gets the same views). Empty when neither augmentation nor
  a unimodal term needs them, or with `eda_captions='off'`."""
  augment = augments_captions(config)
  needs = {"clip": 1 if augment else 0, "roclip": 1 if augment else 0,
           "filter": 1 if augment else 0, "safeclip": 2, "cleanclip": 1}[config.method]
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


def batches_of(indices: np.ndarray, batch_size: int, *, drop_last: bool) -> list[np.ndarray]:
  """Consecutive batches of `indices` (the last one short unless dropped)."""
  n = len(indices)
  stop = (n // batch_size) * batch_size if drop_last else n
  return [indices[i:i + batch_size] for i in range(0, stop, batch_size)]


def keep_best_aligned(scores: np.ndarray, keep_fraction: float) -> np.ndarray:
  """The 'filter' baseline's kept pairs: the floor(keep_fraction·N) highest image-caption
  cosines (ties broken by the lower index), as sorted indices."""
  scores = np.asarray(scores).ravel()
  order = np.lexsort((np.arange(len(scores)), -scores))
  return np.sort(order[:int(np.floor(keep_fraction * len(scores)))])
