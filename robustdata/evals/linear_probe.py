"""Linear probe on frozen features: multinomial logistic regression (scikit-learn, L-BFGS).

The spec's protocol trains one linear layer with AdamW on frozen *un-normalised* image
features; at our scale a converged L2-regularised logistic regression on standardised
features is the deterministic equivalent (the optimum, not a 32-epoch approximation of it).
"""

from __future__ import annotations

import numpy as np


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                 test_labels: np.ndarray, *, l2: float = 1e-3, max_iter: int = 1000) -> dict[str, float]:
  """{'linear_probe_accuracy', 'linear_probe_train_accuracy'} of a logistic-regression probe.

  Features are standardised with the train mean/std; `l2` is the penalty per example
  (sklearn's C = 1 / (l2 · N)).
  """
  from sklearn.linear_model import LogisticRegression

  xtr = np.asarray(train_features, np.float64)
  xte = np.asarray(test_features, np.float64)
  mean, std = xtr.mean(0), xtr.std(0) + 1e-6
  xtr, xte = (xtr - mean) / std, (xte - mean) / std
  clf = LogisticRegression(C=1.0 / (l2 * len(xtr)), max_iter=max_iter)
  clf.fit(xtr, np.asarray(train_labels))
  return {"linear_probe_accuracy": float(clf.score(xte, np.asarray(test_labels))),
          "linear_probe_train_accuracy": float(clf.score(xtr, np.asarray(train_labels)))}
