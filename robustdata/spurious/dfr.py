"""Deep Feature Reweighting (Kirichenko et al. '22; SpuCo's DFR): retrain the last layer on
the embeddings of a held-out group-labelled set.

Protocol: optionally standardise the embeddings; split the set in half; for each C in the grid,
fit an L1 logistic regression (liblinear) on a group-balanced subsample of the first half and
score worst-group accuracy on the second half; with the best C, fit `num_models` models on
group-balanced subsamples of the whole set and average their coefficients and intercepts.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Sequence

import numpy as np

from robustdata.evals.groups import group_accuracy
from robustdata.spurious.groups import downsample_indices

C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


@dataclasses.dataclass
class DFRHead:
  """The retrained last layer: logits = ((z - mean) / scale) @ coef.T + intercept.

  For two classes liblinear gives one row; `logits` then returns (-s, s) for the score s.
  """

  coef: np.ndarray        # (1 or K, D)
  intercept: np.ndarray   # (1 or K,)
  mean: np.ndarray        # (D,)
  scale: np.ndarray       # (D,)
  c: float
  tuning_worst_group: dict[float, float]

  def logits(self, features: np.ndarray) -> np.ndarray:
    """(N, K) class scores for embeddings (N, D)."""
    z = (np.asarray(features, np.float64) - self.mean) / self.scale
    s = z @ self.coef.T + self.intercept
    return np.concatenate([-s, s], axis=1) if self.coef.shape[0] == 1 else s

  def predict(self, features: np.ndarray) -> np.ndarray:
    return np.argmax(self.logits(features), axis=1)


def _fit(features, labels, *, c: float, seed: int):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  # scikit-learn >= 1.8 spells the L1 penalty l1_ratio=1 (penalty= is deprecated there).
  if "l1_ratio" in inspect.signature(LogisticRegression).parameters and (
      inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated"):
    l1 = {"l1_ratio": 1.0}
  else:
    l1 = {"penalty": "l1"}
  model = LogisticRegression(C=c, solver="liblinear", random_state=seed, **l1)
  model.fit(features, labels)
  return model


def fit_dfr(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, num_groups: int,
            rng: np.random.Generator, c_grid: Sequence[float] = C_GRID, num_models: int = 20,
            standardize: bool = True, tune_fraction: float = 0.5) -> DFRHead:
  """The DFR head for held-out embeddings (N, D), class labels and group labels."""
  features = np.asarray(features, np.float64)
  labels, groups = np.asarray(labels), np.asarray(groups)
  if standardize:
    mean, scale = features.mean(0), features.std(0)
    scale = np.where(scale > 0, scale, 1.0)
  else:
    mean, scale = np.zeros(features.shape[1]), np.ones(features.shape[1])
  z = (features - mean) / scale

  perm = rng.permutation(len(z))
  n_fit = int(round(tune_fraction * len(z)))
  fit_idx, eval_idx = perm[:n_fit], perm[n_fit:]
  scores: dict[float, float] = {}
  for c in c_grid:
    sub = fit_idx[downsample_indices(groups[fit_idx], num_groups=num_groups, rng=rng)]
    model = _fit(z[sub], labels[sub], c=c, seed=int(rng.integers(2**31)))
    per_group = group_accuracy(model.predict(z[eval_idx]), labels[eval_idx], groups[eval_idx],
                               num_groups=num_groups)
    scores[float(c)] = float(np.nanmin(per_group))
  best_c = max(scores, key=lambda c: (scores[c], -list(scores).index(c)))

  coefs, intercepts = [], []
  for _ in range(num_models):
    sub = downsample_indices(groups, num_groups=num_groups, rng=rng)
    model = _fit(z[sub], labels[sub], c=best_c, seed=int(rng.integers(2**31)))
    coefs.append(model.coef_)
    intercepts.append(model.intercept_)
  return DFRHead(coef=np.mean(coefs, axis=0), intercept=np.mean(intercepts, axis=0), mean=mean,
                 scale=scale, c=best_c, tuning_worst_group=scores)


def dfr_worst_group_accuracy(head: DFRHead, features: np.ndarray, labels: np.ndarray,
                             groups: np.ndarray, *, num_groups: int) -> float:
  """Worst-group accuracy of a DFR head on an evaluation set (convenience for reports)."""
  per_group = group_accuracy(head.predict(features), labels, groups, num_groups=num_groups)
  return float(np.nanmin(per_group))
