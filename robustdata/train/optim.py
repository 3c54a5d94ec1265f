"""Optimizers and learning-rate schedules.

The learning rate is a host-side function of fractional epoch (so policies whose epochs vary
in length, such as PDE's expanding subset, keep epoch-based schedules), passed into the
compiled step as a scalar and written into `optax.inject_hyperparams` state there.
"""

from __future__ import annotations

import math
from typing import Callable

import optax

from robustdata.registry import ConfigError


def make_optimizer(cfg) -> optax.GradientTransformation:
  """The optimizer of `config.optim` with an injectable `learning_rate` hyperparameter."""
  clip = [optax.clip_by_global_norm(cfg.grad_clip_norm)] if cfg.grad_clip_norm > 0 else []

  def build(learning_rate):
    if cfg.name == "sgd":
      decay = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
      return optax.chain(*clip, *decay, optax.sgd(learning_rate, momentum=cfg.momentum or None,
                                                  nesterov=cfg.nesterov))
    if cfg.name == "adam":
      decay = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
      return optax.chain(*clip, *decay, optax.adam(learning_rate))
    if cfg.name == "adamw":
      return optax.chain(*clip, optax.adamw(learning_rate, weight_decay=cfg.weight_decay))
    raise ConfigError(f"config.optim.name={cfg.name!r} is not known; allowed values: "
                      "['sgd', 'adam', 'adamw']")

  return optax.inject_hyperparams(build)(learning_rate=cfg.learning_rate)


def lr_schedule(cfg, *, epochs: int) -> Callable[[float], float]:
  """lr(epoch) for fractional epochs: linear warm-up, then constant, cosine or step decay."""
  base, warmup = float(cfg.learning_rate), float(cfg.warmup_epochs)
  milestones = sorted(float(m) for m in cfg.milestones)

  def lr(epoch: float) -> float:
    if warmup > 0 and epoch < warmup:
      return base * epoch / warmup
    after = epoch - warmup
    if cfg.schedule == "constant":
      return base
    if cfg.schedule == "cosine":
      span = max(epochs - warmup, 1e-9)
      return base * 0.5 * (1.0 + math.cos(math.pi * min(after / span, 1.0)))
    if cfg.schedule == "step":
      return base * cfg.gamma ** sum(after >= m for m in milestones)
    raise ConfigError(f"config.optim.schedule={cfg.schedule!r} is not known; allowed values: "
                      "['constant', 'cosine', 'step']")

  return lr
