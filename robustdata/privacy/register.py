"""Registers the DP gradient-rule builders under `config.privacy.mode`.

`config.privacy` holds the fields of `config_lib.PRIVACY_DEFAULTS` (their defaults and meanings
are listed there; a missing or None field takes its default): `mode` is the registry key ('sgd'
is the core's plain rule, which hands schedules to the 'dp_sgd' builder); clip_norm C,
noise_multiplier sigma (noise std sigma * C) or target_epsilon to calibrate it; delta, sampling
and accountant for the accounting; clipping, microbatch_size and per_layer for how per-example
gradients are clipped; switch_epoch / switch_to_mode (rules.mode_for_epoch) and the prune_*
fields (pruning.py) schedule mode switches and magnitude pruning (the mask machinery is
robustdata/privacy/masks.py, shared with `config.mask`, a fixed mask with or without DP).

The builders return a `plan.DPPlan` (a `RulePlan`): the loop asks it for the rule of each
epoch, re-jitting on a mode switch or the first mask (later masks are step operands).
Sampling is a policy: config.policy.name 'poisson' or 'shuffle' (policies.py), which must
equal config.privacy.sampling for dp_sgd.
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
