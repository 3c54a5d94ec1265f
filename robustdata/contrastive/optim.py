"""CLIP optimisation pieces: AdamW with a weight-decay mask, a per-phase warm-up + cosine
schedule, and the logit-scale clamp applied after every optimiser step.

The schedule is computed from a step counter that starts at 0 in each phase and stays at 0
after the phase's `total_steps` (no cosine "creeping back up", the RoCLIP/SafeCLIP step-index
defect of spec §0 and §3).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from robustdata.models.clip import LOGIT_SCALE_MAX
from robustdata.registry import ConfigError

_NO_DECAY_KEYS = ("norm", "ln_", "bn", "bias", "logit_scale", "layernorm")


def _key_name(k: Any) -> str:
  return str(getattr(k, "key", getattr(k, "name", k))).lower()


def weight_decay_mask(params: Any) -> Any:
  """True for leaves that get weight decay: not norms, biases or the temperature.

  A leaf is excluded when any path component contains norm/ln_/bn/bias/logit_scale, or the
  leaf is a LayerNorm/GroupNorm `scale`.
  """
  def decays(path, leaf):
    names = [_key_name(k) for k in path]
    if any(any(tag in n for tag in _NO_DECAY_KEYS) for n in names):
      return False
    return names[-1] != "scale"
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(*, learning_rate: float | optax.Schedule, weight_decay: float = 0.1,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
  """AdamW (torch defaults of the reference) with decay masked off norms/biases/temperature.

  Hyperparameters are injected into the optimiser state, so a multi-phase trainer can set the
  learning rate of each step from a per-phase schedule with `set_learning_rate` while Adam's
  moments and bias-correction count carry over between phases.
  """
  return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
      learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
      mask=weight_decay_mask)


def set_learning_rate(opt_state: Any, learning_rate: float | jnp.ndarray) -> Any:
  """The optimiser state of `make_optimizer` with its learning rate replaced (jit-able)."""
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(learning_rate, jnp.asarray(hyper["learning_rate"]).dtype)
  return opt_state._replace(hyperparams=hyper)


def phase_learning_rate(step_in_phase: int, *, peak_lr: float, warmup_steps: int,
                        total_steps: int) -> float:
  """Host-side LR of one phase from its own step counter (0 at the phase start), in float32:
  linear warm-up from 0 to `peak_lr` over `warmup_steps`, then half-cosine to 0 at
  `total_steps`, constant afterwards."""
  if not 0 <= warmup_steps <= total_steps or total_steps <= 0:
    raise ConfigError(f"phase schedule: warmup_steps={warmup_steps} must be in [0, total_steps="
                      f"{total_steps}] and total_steps positive")
  step = jnp.asarray(step_in_phase, jnp.float32)
  warm = peak_lr * (step + 1.0) / max(warmup_steps, 1)
  frac = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
  cos = 0.5 * peak_lr * (1.0 + jnp.cos(jnp.pi * frac))
  return float(jnp.where(step < warmup_steps, warm, cos))


def clamp_logit_scale(params: Any) -> Any:
  """Clamps every `logit_scale` leaf to [0, ln 100] (call after each optimiser step)."""
  def clamp(path, leaf):
    return jnp.clip(leaf, 0.0, LOGIT_SCALE_MAX) if _key_name(path[-1]) == "logit_scale" else leaf
  return jax.tree_util.tree_map_with_path(clamp, params)


def cosine(peak: float, t: float) -> float:
  """Half-cosine from `peak` at t=0 to 0 at t=1 (constant 0 after)."""
  return 0.5 * peak * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
