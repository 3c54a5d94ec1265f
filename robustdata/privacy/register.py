"""Registers the DP gradient-rule builders under `config.privacy.mode`.

`config.privacy` fields read here (missing fields take the defaults in brackets):
  mode                'sgd' | 'clip_only' | 'noise_only' | 'dp_sgd' (the registry key; the
                      core's plain rule owns 'sgd' and hands schedules to the 'dp_sgd' builder)
  clip_norm           C, per-example L2 clipping threshold [1.0]
  noise_multiplier    sigma; noise std is sigma * C [1.0]
  target_epsilon      > 0: calibrate sigma for this epsilon (needs `steps`); 0: use sigma [0]
  delta               target delta, must be < 1/N [1e-5]
  sampling            'poisson' | 'shuffle' [poisson]; accounting follows it
  accountant          'rdp' | 'pld' [rdp]
  clipping            'vmap' | 'ghost' | 'loop' [vmap]
  microbatch_size     vmap micro-batch size, 0/None = whole batch [None]
  per_layer           clip each layer to C / sqrt(L) [False]
  switch_epoch, switch_to_mode   change mode at that epoch (see rules.mode_for_epoch)
  prune_sparsity, prune_scope, prune_start_epoch, prune_every_epochs   magnitude pruning
                      (pruning.py); masks from the current parameters at the scheduled epochs
The builders return a `plan.DPPlan` (a `RulePlan`): the loop asks it for the rule of each
epoch, re-jitting on a mode switch or the first mask (later masks are step operands).
Sampling is a policy: config.policy.name
'poisson' or 'shuffle' (policies.py), which must equal config.privacy.sampling for dp_sgd.
"""

from __future__ import annotations

from typing import Any, Optional

from robustdata.privacy import plan, policies  # pylint: disable=unused-import (registers policies)
from robustdata.registry import GRAD_RULES


# sigma from `config.privacy`: calibrated to target_epsilon over `steps` when that is > 0.
resolve_noise_multiplier = plan.resolve_noise_multiplier


def _builder(mode: str):
  def build(privacy_config: Any, *, expected_batch_size: float, dataset_size: int,
            steps: Optional[int] = None, epochs: Optional[int] = None,
            mask: Any = None) -> plan.DPPlan:
    """The DP plan of `config.privacy` (starting in its `mode`, this builder's mode when the
    section has none), after validating every field. Callable as the rule of its first mode."""
    return plan.DPPlan(privacy_config, mode=mode, expected_batch_size=expected_batch_size,
                       dataset_size=dataset_size, steps=steps, epochs=epochs, mask=mask)
  build.__name__ = f"build_{mode}"
  return build


build_clip_only = GRAD_RULES.register("clip_only")(_builder("clip_only"))
build_noise_only = GRAD_RULES.register("noise_only")(_builder("noise_only"))
build_dp_sgd = GRAD_RULES.register("dp_sgd")(_builder("dp_sgd"))
