"""Classification metrics from host arrays of logits and labels."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def classification_metrics(logits: np.ndarray, y: np.ndarray, *,
                           num_classes: int) -> dict[str, Any]:
  """accuracy, mean cross-entropy loss and per-class accuracy (None for absent classes)."""
  pred = logits.argmax(-1)
  correct = pred == y
  loss = -log_softmax(logits)[np.arange(len(y)), y]
  per_class: dict[str, Optional[float]] = {}
  for c in range(num_classes):
    sel = y == c
    per_class[str(c)] = float(correct[sel].mean()) if sel.any() else None
  return {"accuracy": float(correct.mean()) if len(y) else float("nan"),
          "loss": float(loss.mean()) if len(y) else float("nan"),
          "per_class_accuracy": per_class}


def label_noise_metrics(pred: np.ndarray, y: np.ndarray, clean_y: np.ndarray,
                        flipped: np.ndarray) -> dict[str, Any]:
  """Predictions `pred` on a train split with flipped labels `y` (true labels `clean_y`):
  accuracy_clean on the unflipped rows; accuracy_noisy, the fraction of flipped rows predicted
  as their noisy label (memorisation); noisy_true_accuracy, as their true label; noisy_count.
  An empty part gives NaN."""
  flipped = np.asarray(flipped, bool)
  mean = lambda a: float(a.mean()) if a.size else float("nan")
  return {"accuracy_clean": mean(pred[~flipped] == y[~flipped]),
          "accuracy_noisy": mean(pred[flipped] == y[flipped]),
          "noisy_true_accuracy": mean(pred[flipped] == clean_y[flipped]),
          "noisy_count": int(flipped.sum())}
