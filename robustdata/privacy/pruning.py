"""Magnitude (L1-unstructured) pruning masks for Dense / Conv kernels, as DP-SGD uses them.

Masks are computed from the current parameters (post-processing of private values, so no
extra privacy cost), globally or per layer. The DP rules zero the per-example gradients and
the noise on pruned coordinates, which lowers the effective dimension the noise lives in. The
mask machinery itself (drawing, operands, projection) is shared with `config.mask` and lives in
robustdata/privacy/masks.py; this module checks the `config.privacy.prune_*` values.
"""

from __future__ import annotations

from typing import Any

from robustdata.privacy import checks
from robustdata.privacy import masks

PyTree = Any

is_prunable = masks.is_prunable
apply_mask = masks.apply_mask
effective_dimension = masks.effective_dimension


def magnitude_masks(params: PyTree, *, sparsity: float, scope: str = "global") -> PyTree:
  """A params-shaped float32 0/1 mask pruning the `sparsity` fraction of smallest |w| among
  the prunable kernels (over all of them for 'global', within each kernel for 'layer');
  other leaves get all ones. Exactly round(sparsity * n) coordinates are pruned."""
  checks.check_prune_sparsity(sparsity)
  checks.check_choice("prune_scope", scope, checks.PRUNE_SCOPES)
  return masks.magnitude_masks(params, sparsity=sparsity, scope=scope)


def should_prune(epoch: int, *, prune_every_epochs: int) -> bool:
  """Prune once at epoch 0 (prune_every_epochs <= 0) or every `prune_every_epochs` epochs."""
  if prune_every_epochs <= 0:
    return epoch == 0
  return epoch % prune_every_epochs == 0
