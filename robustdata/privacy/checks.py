"""Validation of privacy hyperparameters and models, raising `ConfigError` naming the field.

Kept apart from the kernels so that configs can be checked before anything compiles.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax

from robustdata.registry import ConfigError

MODES = ("sgd", "clip_only", "noise_only", "dp_sgd")
CLIPPING_METHODS = ("vmap", "ghost", "loop")
SAMPLINGS = ("poisson", "shuffle")
ACCOUNTANTS = ("rdp", "pld")
PRUNE_SCOPES = ("global", "layer")


def check_choice(field: str, value: Any, allowed: tuple) -> None:
  """Raises if `value` is not one of `allowed`."""
  if value not in allowed:
    raise ConfigError(f"config.privacy.{field}={value!r} must be one of {list(allowed)}")


def check_clip_norm(clip_norm: float) -> None:
  """The clipping threshold C must be a finite positive number."""
  if not clip_norm > 0 or clip_norm == float("inf"):
    raise ConfigError(f"config.privacy.clip_norm={clip_norm} must be > 0 and finite")


def check_noise_multiplier(noise_multiplier: float) -> None:
  """The noise multiplier sigma must be >= 0 (0 means no noise)."""
  if not noise_multiplier >= 0:
    raise ConfigError(f"config.privacy.noise_multiplier={noise_multiplier} must be >= 0")


def check_sampling_rate(sampling_rate: float) -> None:
  """The per-step sampling probability q must lie in (0, 1]."""
  if not 0 < sampling_rate <= 1:
    raise ConfigError(f"config.privacy sampling rate q={sampling_rate} must be in (0, 1] "
                      "(config.train.batch_size must be <= the train set size)")


def check_delta(delta: float, dataset_size: Optional[int]) -> None:
  """delta must be in (0, 1/N): a larger delta allows releasing an example outright."""
  if not 0 < delta < 1:
    raise ConfigError(f"config.privacy.delta={delta} must be in (0, 1)")
  if dataset_size is not None and not delta < 1.0 / dataset_size:
    raise ConfigError(f"config.privacy.delta={delta} must be < 1/N = {1.0 / dataset_size:.3g} "
                      f"(N={dataset_size} train examples)")


def check_steps(steps: int) -> None:
  """The number of noisy steps must be a non-negative integer."""
  if int(steps) != steps or steps < 0:
    raise ConfigError(f"config.privacy steps={steps} must be a non-negative integer")


def check_prune_sparsity(sparsity: float) -> None:
  """The pruned fraction must be in [0, 1)."""
  if not 0 <= sparsity < 1:
    raise ConfigError(f"config.privacy.prune_sparsity={sparsity} must be in [0, 1)")


def check_no_batchnorm(variables: Mapping[str, Any]) -> None:
  """Refuses models with BatchNorm statistics: they mix examples, so per-example clipping
  no longer bounds one example's influence. Use the GroupNorm variant (norm='group')."""
  stats = variables.get("batch_stats") if hasattr(variables, "get") else None
  if stats is not None and jax.tree_util.tree_leaves(stats):
    raise ConfigError(
        "config.model.norm='batch' is not allowed under DP-SGD: BatchNorm mixes examples in a "
        "batch, so per-example clipping does not bound sensitivity; use config.model.norm="
        "'group' (or 'none')")
