"""Group-robustness evaluations from predictions (pure NumPy), following SpuCo's `Evaluator`.

- per-group accuracy (NaN for a group with no examples in the evaluated split);
- worst-group accuracy over the groups present;
- average accuracy weighted by the **training** group proportions (SpuCo's definition; test
  sets are often group-balanced, so their own proportions would overweight minority groups);
- spurious-attribute prediction accuracy (how often the prediction equals the spurious label).
Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np


def group_accuracy(predictions: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
                   num_groups: int) -> np.ndarray:
  """Accuracy per group, (num_groups,) float64, NaN where a group has no examples."""
  correct = (np.asarray(predictions) == np.asarray(labels)).astype(np.float64)
  groups = np.asarray(groups)
  counts = np.bincount(groups, minlength=num_groups)
  hits = np.bincount(groups, weights=correct, minlength=num_groups)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def worst_group_accuracy(per_group: np.ndarray) -> tuple[int, float]:
  """(group, accuracy) of the least accurate group among those present (not NaN)."""
  per_group = np.asarray(per_group, dtype=np.float64)
  if np.all(np.isnan(per_group)):
    raise ValueError("no group has examples; worst-group accuracy is undefined")
  g = int(np.nanargmin(per_group))
  return g, float(per_group[g])


def weighted_average_accuracy(per_group: np.ndarray, train_group_counts: np.ndarray) -> float:
  """sum_g w_g acc_g with w = training group proportions, renormalised over the groups present
  in the evaluated split (SpuCo's `average_accuracy`)."""
  per_group = np.asarray(per_group, dtype=np.float64)
  weights = np.asarray(train_group_counts, dtype=np.float64)
  present = ~np.isnan(per_group)
  total = weights[present].sum()
  if total <= 0:
    raise ValueError("the training group counts give no weight to the groups evaluated")
  return float((weights[present] * per_group[present]).sum() / total)


def spurious_attribute_accuracy(predictions: np.ndarray, spurious: np.ndarray) -> float:
  """Fraction of predictions equal to the spurious attribute (SpuCo's spurious-attribute
  prediction; high means the model predicts the background, not the digit)."""
  return float(np.mean(np.asarray(predictions) == np.asarray(spurious)))


def group_report(predictions: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
                 num_groups: int, train_group_counts: np.ndarray,
                 group_names: Optional[Sequence[str]] = None,
                 spurious: Optional[np.ndarray] = None) -> dict:
  """The results-contract metrics: worst_group_accuracy, average_accuracy, group_accuracy
  (keyed by group name, present groups only), accuracy, and spurious_accuracy when given."""
  per_group = group_accuracy(predictions, labels, groups, num_groups=num_groups)
  names = list(group_names) if group_names else [str(g) for g in range(num_groups)]
  worst_g, worst = worst_group_accuracy(per_group)
  report = {
      "worst_group_accuracy": worst,
      "worst_group": names[worst_g],
      "average_accuracy": weighted_average_accuracy(per_group, train_group_counts),
      "accuracy": float(np.mean(np.asarray(predictions) == np.asarray(labels))),
      "group_accuracy": {names[g]: float(per_group[g]) for g in range(num_groups)
                         if not np.isnan(per_group[g])},
  }
  if spurious is not None:
    report["spurious_accuracy"] = spurious_attribute_accuracy(predictions, spurious)
  return report


def plot_group_accuracy(per_group: np.ndarray, path: str, *,
                        group_names: Optional[Sequence[str]] = None,
                        title: str = "accuracy per group") -> str:
  """Writes a bar plot PNG of the per-group accuracy (worst group highlighted) to `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  per_group = np.asarray(per_group, dtype=np.float64)
  names = list(group_names) if group_names else [str(g) for g in range(len(per_group))]
  values = np.nan_to_num(per_group, nan=0.0)
  colours = ["tab:blue"] * len(values)
  if not np.all(np.isnan(per_group)):
    colours[int(np.nanargmin(per_group))] = "tab:red"
  fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(values) + 1.5), 3.5))
  ax.bar(np.arange(len(values)), values, color=colours)
  ax.set_xticks(np.arange(len(values)))
  ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
  ax.set_ylim(0.0, 1.0)
  ax.set_ylabel("accuracy")
  ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
