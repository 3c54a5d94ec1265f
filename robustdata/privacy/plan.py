"""The DP gradient-rule plan the loop runs: mode switches, pruning masks and accounting.

One `DPPlan` per run. At each epoch start the loop asks `choose(epoch, params)`: the plan
picks the mode in force (`mode`, or `switch_to_mode` from `switch_epoch` on), recomputes the
magnitude mask on the scheduled pruning epochs from the current (already private) parameters,
and returns a rule keyed by (mode, whether a mask is in force) with the mask as a step operand:
the loop re-jits only when the key changes, not at every recomputed mask.
The mask and the modes used ride in the checkpoint (`state_dict`), so a resume is bitwise.
Epsilon is finite only while every step so far was a `dp_sgd` step.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax

from robustdata import config_lib
from robustdata.privacy import accounting, checks, clipping, masks, pruning, rules
from robustdata.registry import ConfigError
from robustdata.train import grad_rules

PyTree = Any


def prune_events(*, start: int, every: int, epochs: Optional[int]) -> list[int]:
  """Epochs at whose start masks are recomputed: [start] once, or start, start+every, ..."""
  if every <= 0:
    return [start]
  if epochs is None:
    raise ConfigError("config.privacy.prune_every_epochs > 0 needs the number of epochs")
  return list(range(start, max(epochs, start + 1), every))


# A mask in the checkpoint's host state (JSON): robustdata/privacy/masks.py.
encode_mask = masks.encode_mask
decode_mask = masks.decode_mask


class DPPlan(grad_rules.RulePlan):
  """DP-SGD and its ablations over a run, from `config.privacy` (config_lib.PRIVACY_DEFAULTS)."""

  def __init__(self, privacy_config: Any, *, mode: str, expected_batch_size: float,
               dataset_size: int, steps: Optional[int] = None, epochs: Optional[int] = None,
               mask: Optional[PyTree] = None):
    cfg = privacy_config

    def get(name):
      return config_lib.privacy_field(cfg, name)

    given_mode = None if cfg is None else cfg.get("mode")
    self.mode = mode if given_mode is None else given_mode
    checks.check_choice("mode", self.mode, checks.MODES)
    self.switch_epoch = int(get("switch_epoch"))
    self.switch_to_mode = get("switch_to_mode") if self.switch_epoch >= 0 else ""
    if self.switch_epoch >= 0:
      checks.check_choice("switch_to_mode", self.switch_to_mode, checks.MODES)
    self.dataset_size = int(dataset_size)
    self.sampling_rate = expected_batch_size / dataset_size
    self.expected_batch_size = expected_batch_size
    checks.check_sampling_rate(self.sampling_rate)
    self.sampling = get("sampling")
    checks.check_choice("sampling", self.sampling, checks.SAMPLINGS)
    self.accountant = get("accountant")
    checks.check_choice("accountant", self.accountant, checks.ACCOUNTANTS)
    self.delta = float(get("delta"))
    checks.check_delta(self.delta, dataset_size)
    self.clip_norm = float(get("clip_norm"))
    checks.check_clip_norm(self.clip_norm)
    checks.check_noise_multiplier(float(get("noise_multiplier")))
    self.target_epsilon = float(get("target_epsilon"))
    self.noise_multiplier = resolve_noise_multiplier(cfg, sampling_rate=self.sampling_rate,
                                                     steps=steps, dataset_size=dataset_size)
    self.method = get("clipping")
    self.microbatch_size = int(get("microbatch_size")) or None
    self.per_layer = bool(get("per_layer"))
    self.sparsity = float(get("prune_sparsity"))
    checks.check_prune_sparsity(self.sparsity)
    self.scope = get("prune_scope")
    checks.check_choice("prune_scope", self.scope, checks.PRUNE_SCOPES)
    start = int(get("prune_start_epoch"))
    if start < 0:
      raise ConfigError(f"config.privacy.prune_start_epoch={start} must be >= 0")
    self.events = (prune_events(start=start, every=int(get("prune_every_epochs")),
                                epochs=epochs) if self.sparsity > 0 else [])
    self.mask = mask
    self.pruned_at: list[int] = []  # epochs whose start recomputed the mask
    self.modes_used: list[str] = []
    self.effective_dimension: Optional[int] = None
    self.total_dimension: Optional[int] = None
    self._rules: dict[Any, Any] = {}
    self._operands_of: Any = None
    self._operands_cache: Optional[dict[str, Any]] = None
    self._uses_dp = {"dp_sgd"} & {self.mode, self.switch_to_mode}
    # Build the rules now so that every bad value stops the run before anything compiles.
    self._rule(self.mode)
    if self.switch_to_mode:
      self._rule(self.switch_to_mode)

  # --- The rules. --------------------------------------------------------------------------------
  def _rule(self, mode: str):
    """The rule of `mode`, without a built-in mask: masks come as call-time operands
    (`_operands`), so recomputing one does not re-jit the step."""
    if mode not in self._rules:
      self._rules[mode] = rules.make_dp_rule(
          mode=mode, clip_norm=self.clip_norm, noise_multiplier=self.noise_multiplier,
          expected_batch_size=self.expected_batch_size, method=self.method,
          microbatch_size=self.microbatch_size, per_layer=self.per_layer)
    return self._rules[mode]

  def _operands(self) -> Optional[dict[str, Any]]:
    """{'mask': flat mask} of the current mask (None without one); the same object until the
    mask changes, which is how the loop tells a new mask (and re-projects the parameters)."""
    if self.mask is None:
      return None
    if self._operands_of is not self.mask:
      self._operands_cache = {"mask": masks.flat_operand_mask(self.mask)}
      self._operands_of = self.mask
    return self._operands_cache

  def __call__(self, *args, **kwargs):
    """The plan used directly as a rule: the rule of its first mode, with the current mask."""
    operands = self._operands()
    if operands is not None and "operands" not in kwargs:
      kwargs["operands"] = jax.tree.map(jax.numpy.asarray, operands)
    return self._rule(self.mode)(*args, **kwargs)

  def setup(self, params: PyTree, model_state: PyTree, *, config: Any = None) -> None:
    """Refuses BatchNorm, a DP run whose policy is not its sampling, and pruning without
    prunable kernels; records the parameter count."""
    checks.check_no_batchnorm(model_state)
    if config is not None and self._uses_dp and config.policy.name != self.sampling:
      raise ConfigError(
          f"config.policy.name={config.policy.name!r} does not match config.privacy.sampling="
          f"{self.sampling!r}: dp_sgd accounts for the sampling, so the policy must be "
          f"{self.sampling!r} (the 'poisson' or 'shuffle' policy of robustdata.privacy)")
    flat = clipping.flatten(params)
    self.total_dimension = int(sum(math.prod(v.shape) for v in flat.values()))
    if self.events and not any(pruning.is_prunable(k, v) for k, v in flat.items()):
      raise ConfigError("config.privacy.prune_sparsity > 0 but the model has no conv/dense "
                        "kernels to prune")

  def choose(self, epoch: int, params: PyTree) -> grad_rules.RuleChoice:
    mode = rules.mode_for_epoch(epoch, mode=self.mode, switch_epoch=self.switch_epoch,
                                switch_to_mode=self.switch_to_mode or None)
    if epoch in self.events and epoch not in self.pruned_at:
      host = jax.device_get(params)
      level = self.sparsity * (self.events.index(epoch) + 1) / len(self.events)
      self.mask = pruning.magnitude_masks(host, sparsity=level, scope=self.scope)
      self.pruned_at.append(epoch)
    if mode not in self.modes_used:
      self.modes_used.append(mode)
    project = None
    if self.mask is not None:
      project = lambda p, operands: masks.apply_flat_mask(p, operands["mask"])
      self.effective_dimension = pruning.effective_dimension(self.mask, self.mask)
    # The key changes with the mode and when a first mask appears; later masks are operands.
    return grad_rules.RuleChoice(key=(mode, self.mask is not None), rule=self._rule(mode),
                                 project=project, operands=self._operands())

  # --- Accounting and logging. -------------------------------------------------------------------
  def private(self) -> bool:
    """True while every step so far clipped and noised (only then is epsilon finite)."""
    return bool(self.modes_used) and set(self.modes_used) == {"dp_sgd"}

  def epsilon(self, steps: int) -> float:
    if steps == 0:
      return 0.0
    if not self.private() or self.noise_multiplier == 0:
      return math.inf
    return accounting.epsilon(noise_multiplier=self.noise_multiplier,
                              sampling_rate=self.sampling_rate, steps=steps, delta=self.delta,
                              accountant=self.accountant, sampling=self.sampling,
                              dataset_size=self.dataset_size)

  def epoch_metrics(self, *, epoch: int, steps: int) -> dict[str, Any]:
    out = {"epsilon": self.epsilon(steps), "mode": self.modes_used[-1] if self.modes_used else
           self.mode}
    if self.effective_dimension is not None:
      out["effective_dimension"] = self.effective_dimension
      out["sparsity"] = 1.0 - self.effective_dimension / max(self.total_dimension or 1, 1)
    return out

  def results(self, *, epoch: int, steps: int) -> dict[str, Any]:
    noisy = any(rules.mode_flags(m)[1] for m in self.modes_used)
    eps = self.epsilon(steps)
    out = {
        "epsilon": eps if math.isfinite(eps) else "inf",
        "delta": self.delta,
        "noise_multiplier": self.noise_multiplier if noisy else 0.0,
        "sampling_rate": self.sampling_rate,
        "clip_norm": self.clip_norm,
        "privacy_mode": "->".join(self.modes_used) or self.mode,
        "sampling": self.sampling,
    }
    if self.target_epsilon > 0:
      out["target_epsilon"] = self.target_epsilon
    if self.total_dimension is not None:
      out["effective_dimension"] = (self.effective_dimension if self.effective_dimension
                                    is not None else self.total_dimension)
      out["total_dimension"] = self.total_dimension
    return out

  def state_dict(self) -> dict[str, Any]:
    return {"pruned_at": list(self.pruned_at), "modes_used": list(self.modes_used),
            "mask": encode_mask(self.mask) if self.mask is not None else None,
            "effective_dimension": self.effective_dimension}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    if not state:
      return
    self.pruned_at = [int(e) for e in state["pruned_at"]]
    self.modes_used = list(state["modes_used"])
    self.mask = decode_mask(state["mask"]) if state.get("mask") is not None else None
    self.effective_dimension = state.get("effective_dimension")
    self._rules.clear()


def resolve_noise_multiplier(privacy_config: Any, *, sampling_rate: float,
                             steps: Optional[int], dataset_size: int) -> float:
  """sigma from the config, calibrated to `target_epsilon` over `steps` when that is > 0."""
  target = float(config_lib.privacy_field(privacy_config, "target_epsilon"))
  if target <= 0:
    return float(config_lib.privacy_field(privacy_config, "noise_multiplier"))
  if steps is None:
    raise ConfigError("config.privacy.target_epsilon > 0 needs the number of training steps")
  return accounting.calibrate_noise_multiplier(
      target_epsilon=target, sampling_rate=sampling_rate, steps=steps,
      delta=float(config_lib.privacy_field(privacy_config, "delta")),
      accountant=config_lib.privacy_field(privacy_config, "accountant"),
      sampling=config_lib.privacy_field(privacy_config, "sampling"), dataset_size=dataset_size)
