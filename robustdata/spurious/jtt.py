"""Just Train Twice (Liu et al. '21; SpuCo's JTT): the error set of an early-stopped ERM model
and its upweighting (lambda_up) for the second training run."""

from __future__ import annotations

import numpy as np


def error_set(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Indices of the examples the identification model misclassifies."""
  return np.flatnonzero(np.asarray(predictions) != np.asarray(labels)).astype(np.int64)


def inferred_groups(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """SpuCo's JTT group inference: 0 for correctly classified examples, 1 for the error set."""
  return (np.asarray(predictions) != np.asarray(labels)).astype(np.int32)


def upweight_weights(num_examples: int, errors: np.ndarray, *, upweight: float) -> np.ndarray:
  """Per-example loss weights: lambda_up on the error set, 1 elsewhere."""
  if upweight < 1:
    raise ValueError(f"upweight={upweight} must be >= 1")
  weights = np.ones(num_examples, dtype=np.float32)
  weights[np.asarray(errors, dtype=np.int64)] = upweight
  return weights


def upsample_indices(num_examples: int, errors: np.ndarray, *, upweight: int,
                     rng: np.random.Generator) -> np.ndarray:
  """An epoch's indices with each error-set example repeated `upweight` times and every other
  example once (JTT's upsampling), shuffled."""
  if int(upweight) != upweight or upweight < 1:
    raise ValueError(f"upweight={upweight} must be an integer >= 1 for upsampling")
  errors = np.asarray(errors, dtype=np.int64)
  extra = np.repeat(errors, int(upweight) - 1)
  return rng.permutation(np.concatenate([np.arange(num_examples, dtype=np.int64), extra]))
