"""Attack success rates for poisoned CLIP models (spec §2 and §4), on zero-shot predictions.

- Targeted: a target image succeeds when its zero-shot top-k contains its adversarial class;
  ASR = successes / targets (top-1 is the headline, top-3/5 also reported).
- Backdoor: triggered held-out images whose true class is not the target class; ASR =
  fraction predicted (top-1) as the target class.

Also the defences' poison diagnostics: the poisons among the pairs a defence keeps, and
RoCLIP's nearest pool captions of the poisoned images.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from robustdata.evals.zero_shot import topk_hits, zero_shot_logits


def targeted_asr(target_emb: np.ndarray, adversarial_classes: Sequence[int], class_emb: np.ndarray,
                 *, topk: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
  """{'targeted_asr': top-1 ASR, 'targeted_asr_top3': ...} over the target images."""
  logits = zero_shot_logits(target_emb, class_emb)
  adv = np.asarray(adversarial_classes)
  out = {}
  for k in topk:
    if k > logits.shape[1]:
      continue
    out["targeted_asr" if k == 1 else f"targeted_asr_top{k}"] = float(topk_hits(logits, adv, k).mean())
  return out


def backdoor_asr(triggered_emb: np.ndarray, true_labels: np.ndarray, class_emb: np.ndarray, *,
                 target_class: int) -> dict[str, float]:
  """{'backdoor_asr', 'backdoor_eval_count'}: triggered images (target class excluded)
  predicted as `target_class`."""
  keep = np.asarray(true_labels) != target_class
  if not keep.any():
    return {"backdoor_asr": float("nan"), "backdoor_eval_count": 0}
  pred = zero_shot_logits(np.asarray(triggered_emb)[keep], class_emb).argmax(axis=1)
  return {"backdoor_asr": float((pred == target_class).mean()),
          "backdoor_eval_count": int(keep.sum())}


def attack_rows(train_ids: np.ndarray, record: dict[str, Any]) -> dict[str, np.ndarray]:
  """{attack: rows of the train split holding its poisons} for the attacks in a poison
  `record` (ids of `train_ids`)."""
  return {a: np.flatnonzero(np.isin(train_ids, record[a]["poisoned_ids"]))
          for a in ("targeted", "backdoor") if a in record}


def kept_stats(kept, is_poison: np.ndarray, rows: dict[str, np.ndarray],
               what: str) -> dict[str, Any]:
  """Poisons among the `kept` rows (a safe set or a filter's kept pairs), overall and per
  attack (`rows` from `attack_rows`), with the poison rate kept against the base rate."""
  kept = np.asarray(kept, np.int64)
  out: dict[str, Any] = {f"{what}_poison_rate": float(is_poison[kept].mean()) if len(kept) else 0.0,
                         "base_poison_rate": float(is_poison.mean())}
  for attack, r in rows.items():
    out[f"{attack}_in_{what}"] = int(np.isin(r, kept).sum())
  return out


def nearest_caption_stats(image_emb: np.ndarray, classes: np.ndarray, pool: np.ndarray,
                          pool_ids: np.ndarray, mentions: Callable[[int], np.ndarray],
                          is_poison: np.ndarray, *, prefix: str) -> dict[str, float]:
  """RoCLIP's matching seen from one attack's poisoned images (embeddings `image_emb`, the
  attack's class of each in `classes`): the share whose nearest `pool` caption names that class
  (`mentions(k)`: a bool per train row), the share of pool captions naming it (the base rate),
  and the share whose nearest caption is itself a poison. `pool_ids`: the train row of each pool
  row, -1 for a random pre-fill row (which names nothing)."""
  pool = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
  nn = pool_ids[np.argmax(image_emb @ pool.T, axis=1)]
  names = {int(k): mentions(int(k)) for k in np.unique(classes)}
  real = pool_ids[pool_ids >= 0]
  hit = [j >= 0 and names[int(k)][j] for j, k in zip(nn, classes)]
  base = [names[int(k)][real].sum() / max(len(pool_ids), 1) for k in classes]
  return {f"{prefix}_nn_names_class": float(np.mean(hit)),
          f"{prefix}_pool_names_class": float(np.mean(base)),
          f"{prefix}_nn_is_poison": float(np.mean([j >= 0 and is_poison[j] for j in nn]))}
