"""Magnitude (L1-unstructured) pruning masks for Dense / Conv kernels.

Masks are computed from the current parameters (post-processing of private values, so no
extra privacy cost), globally or per layer. The DP rules zero the per-example gradients and
the noise on pruned coordinates, which lowers the effective dimension the noise lives in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustdata.privacy import checks, clipping

PyTree = Any


def is_prunable(path: tuple, leaf: Any) -> bool:
  """Conv / Dense kernels: leaves named 'kernel' with at least 2 dimensions."""
  return path[-1] == "kernel" and np.ndim(leaf) >= 2


def magnitude_masks(params: PyTree, *, sparsity: float, scope: str = "global") -> PyTree:
  """A params-shaped float32 0/1 mask pruning the `sparsity` fraction of smallest |w| among
  the prunable kernels (over all of them for 'global', within each kernel for 'layer');
  other leaves get all ones. Exactly round(sparsity * n) coordinates are pruned."""
  checks.check_prune_sparsity(sparsity)
  checks.check_choice("prune_scope", scope, checks.PRUNE_SCOPES)
  flat = {k: np.asarray(v) for k, v in clipping.flatten(params).items()}
  masks = {k: np.ones(v.shape, np.float32) for k, v in flat.items()}
  prunable = [k for k, v in flat.items() if is_prunable(k, v)]

  def prune(keys):
    mags = np.concatenate([np.abs(flat[k]).ravel() for k in keys])
    count = int(round(sparsity * mags.size))
    keep = np.ones(mags.size, np.float32)
    keep[np.argsort(mags, kind="stable")[:count]] = 0.0
    start = 0
    for k in keys:
      n = flat[k].size
      masks[k] = keep[start:start + n].reshape(flat[k].shape)
      start += n

  if prunable and sparsity > 0:
    if scope == "global":
      prune(prunable)
    else:
      for k in prunable:
        prune([k])
  return clipping.unflatten(masks)


def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
  """Zeroes pruned coordinates of the parameters."""
  flat_m = clipping.flatten(mask)
  return clipping.unflatten({k: v * flat_m[k] if k in flat_m else v
                             for k, v in clipping.flatten(params).items()})


def effective_dimension(params: PyTree, mask: PyTree | None = None) -> int:
  """Number of unpruned parameters (all parameters without a mask)."""
  flat = clipping.flatten(params)
  if mask is None:
    return int(sum(np.size(v) for v in flat.values()))
  flat_m = clipping.flatten(mask)
  return int(sum(np.sum(np.asarray(flat_m[k]) != 0) if k in flat_m else np.size(v)
                 for k, v in flat.items()))


def should_prune(epoch: int, *, prune_every_epochs: int) -> bool:
  """Prune once at epoch 0 (prune_every_epochs <= 0) or every `prune_every_epochs` epochs."""
  if prune_every_epochs <= 0:
    return epoch == 0
  return epoch % prune_every_epochs == 0
