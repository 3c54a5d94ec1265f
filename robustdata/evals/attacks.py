"""Attack success rates for poisoned CLIP models (spec §2 and §4), on zero-shot predictions.

- Targeted: a target image succeeds when its zero-shot top-k contains its adversarial class;
  ASR = successes / targets (top-1 is the headline, top-3/5 also reported).
- Backdoor: triggered held-out images whose true class is not the target class; ASR =
  fraction predicted (top-1) as the target class.
"""

from __future__ import annotations

from typing import Sequence

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
