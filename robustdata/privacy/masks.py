"""Parameter masks over the conv/dense kernels: which coordinates train.

Two users share this machinery. `config.mask` (config_lib.MASK_DEFAULTS) fixes a random or
magnitude mask of density d for the whole run, with any gradient rule (spec §8: density under
label noise); DP-SGD's magnitude pruning (`config.privacy.prune_*`, privacy/plan.py) recomputes
its mask on a schedule. Either way a mask is a params-shaped 0/1 tree, handed to the compiled
step as a flat operand (`flat_operand_mask`), applied to the gradient and re-applied to the
parameters after every update (`apply_flat_mask`), so masked weights stay exactly zero.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
from typing import Any, Callable, Optional

import jax
import numpy as np

from robustdata import config_lib
from robustdata.privacy.clipping import flatten, unflatten
from robustdata.registry import ConfigError

PyTree = Any
KINDS = ("random", "magnitude")
SCOPES = ("global", "layer")
# Stream tag of the random mask: default_rng([config.seed, MASK_STREAM]).
MASK_STREAM = 0x3A5C


def is_prunable(path: tuple, leaf: Any) -> bool:
  """Conv / Dense kernels: leaves named 'kernel' with at least 2 dimensions."""
  return path[-1] == "kernel" and np.ndim(leaf) >= 2


def _masks(params: PyTree, scores: Callable[[tuple, Any], np.ndarray],
           drop_count: Callable[[int], int], scope: str) -> PyTree:
  """A params-shaped float32 0/1 mask zeroing, among the prunable kernels (all at once for
  'global', each alone for 'layer'), the `drop_count(n)` coordinates of lowest score; other
  leaves get all ones. Ties keep the earlier coordinate (a stable sort)."""
  flat = flatten(params)
  masks = {k: np.ones(np.shape(v), np.float32) for k, v in flat.items()}
  prunable = [k for k, v in flat.items() if is_prunable(k, v)]
  score = {k: scores(k, flat[k]) for k in prunable}

  def prune(keys):
    values = np.concatenate([score[k].ravel() for k in keys])
    keep = np.ones(values.size, np.float32)
    keep[np.argsort(values, kind="stable")[:drop_count(values.size)]] = 0.0
    start = 0
    for k in keys:
      n = masks[k].size
      masks[k] = keep[start:start + n].reshape(masks[k].shape)
      start += n

  if prunable:
    for keys in ([prunable] if scope == "global" else [[k] for k in prunable]):
      prune(keys)
  return unflatten(masks)


def magnitude_masks(params: PyTree, *, sparsity: float, scope: str = "global") -> PyTree:
  """Prunes the round(sparsity * n) smallest |w| of the prunable kernels (L1-unstructured)."""
  return _masks(params, lambda _, v: np.abs(np.asarray(v)),
                lambda n: int(round(sparsity * n)) if sparsity > 0 else 0, scope)


def random_masks(params: PyTree, *, density: float, seed: int, scope: str = "global") -> PyTree:
  """Keeps round(density * n) of the n prunable kernel coordinates, chosen uniformly at random
  from `seed` (global random unstructured pruning); only the parameter shapes are read."""
  rng = np.random.default_rng([int(seed), MASK_STREAM])
  return _masks(params, lambda _, v: rng.random(np.shape(v)),
                lambda n: n - int(round(density * n)), scope)


def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
  """Zeroes the masked coordinates of the parameters."""
  return apply_flat_mask(params, flatten(mask))


def apply_flat_mask(tree: PyTree, flat_mask: Optional[dict]) -> PyTree:
  """`tree` (params or gradients) times the flat mask (leaves outside it unchanged)."""
  if not flat_mask:
    return tree
  return unflatten({k: v * flat_mask[k] if k in flat_mask else v
                    for k, v in flatten(tree).items()})


def flat_operand_mask(mask: PyTree) -> dict[tuple, np.ndarray]:
  """A mask as a step operand: every prunable kernel's leaf and every other leaf that is not all
  ones, float32 on the host. The key set depends only on the parameter shapes, so every mask
  of a run gives the step the same argument structure (a new mask reuses the compiled step)."""
  out = {}
  for path, leaf in flatten(mask).items():
    if leaf is None:
      continue
    arr = np.asarray(leaf, np.float32)
    if is_prunable(path, arr) or not np.all(arr == 1.0):
      out[path] = arr
  return out


def effective_dimension(params: PyTree, mask: PyTree | None = None) -> int:
  """Number of unmasked parameters (all parameters without a mask)."""
  flat = flatten(params)
  if mask is None:
    return int(sum(np.size(v) for v in flat.values()))
  flat_m = flatten(mask)
  return int(sum(np.sum(np.asarray(flat_m[k]) != 0) if k in flat_m else np.size(v)
                 for k, v in flat.items()))


def encode_mask(mask: PyTree) -> dict[str, Any]:
  """A params-shaped 0/1 mask as JSON: per leaf its shape and base64 of the packed bits."""
  out = {}
  for path, leaf in flatten(mask).items():
    arr = np.asarray(leaf) != 0
    out["/".join(path)] = {"shape": list(arr.shape),
                           "bits": base64.b64encode(np.packbits(arr.ravel())).decode()}
  return out


def decode_mask(encoded: dict[str, Any]) -> PyTree:
  """Inverse of `encode_mask` (float32 leaves)."""
  flat = {}
  for key, item in encoded.items():
    shape = tuple(item["shape"])
    bits = np.unpackbits(np.frombuffer(base64.b64decode(item["bits"]), np.uint8))
    flat[tuple(key.split("/"))] = bits[:int(np.prod(shape))].reshape(shape).astype(np.float32)
  return unflatten(flat)


def takes_operands(rule: Callable) -> bool:
  """Whether a gradient rule reads call-time operands (`rule(..., operands=...)`)."""
  try:
    return "operands" in inspect.signature(rule).parameters
  except (TypeError, ValueError):
    return False


def masked_rule(rule: Callable) -> Callable:
  """`rule` taking the mask as operand {'mask': flat mask}: a rule that reads operands (the DP
  rules: per-example gradients and noise masked before clipping) gets them; the gradient it
  returns is masked either way, so the optimizer (momentum, global-norm clipping) sees zeros."""
  inner_takes = takes_operands(rule)

  def rule_fn(loss_fn, params, model_state, batch, rng, coef_fn, operands=None):
    extra = {"operands": operands} if inner_takes else {}
    grads, new_model_state, aux = rule(loss_fn, params, model_state, batch, rng, coef_fn,
                                       **extra)
    return apply_flat_mask(grads, operands["mask"]), new_model_state, aux

  return rule_fn


def _mask_field(section: Any, name: str) -> Any:
  value = section.get(name) if section is not None else None
  return config_lib.MASK_DEFAULTS[name] if value is None else value


class MaskPlan:
  """The mask of `config.mask` over a run: drawn once at the start of `start_epoch` (a random
  mask from the seed, or a magnitude mask from the parameters then), fixed afterwards, and
  combined with the gradient rule's own choice (`combine`). Rides in the checkpoint."""

  def __init__(self, section: Any, *, seed: int):
    for key in section.keys():
      if key not in config_lib.MASK_DEFAULTS:
        raise ConfigError(f"config.mask.{key} is not a known field; allowed: "
                          f"{sorted(config_lib.MASK_DEFAULTS)}")
    self.kind = _mask_field(section, "kind")
    self.scope = _mask_field(section, "scope")
    self.density = _mask_field(section, "density")
    self.start_epoch = _mask_field(section, "start_epoch")
    for name, value, allowed in (("kind", self.kind, KINDS), ("scope", self.scope, SCOPES)):
      if value not in allowed:
        raise ConfigError(f"config.mask.{name}={value!r} is not known; allowed: {list(allowed)}")
    if (isinstance(self.density, bool) or not isinstance(self.density, (int, float))
        or not 0.0 < self.density <= 1.0):
      raise ConfigError(f"config.mask.density={self.density!r} must be in (0, 1] (the fraction "
                        "of conv/dense kernel coordinates kept; 1 = no mask)")
    if (isinstance(self.start_epoch, bool) or not isinstance(self.start_epoch, int)
        or self.start_epoch < 0):
      raise ConfigError(f"config.mask.start_epoch={self.start_epoch!r} must be an integer >= 0")
    self.density, self.seed = float(self.density), int(seed)
    self.mask: Optional[PyTree] = None
    self.total_dimension: Optional[int] = None
    self.prunable_dimension: Optional[int] = None
    self._cache: tuple = (None, None, None)  # (inner operands, mask, combined operands)

  def active(self) -> bool:
    return self.density < 1.0

  def setup(self, params: PyTree) -> None:
    """Refuses a model without conv/dense kernels; records the parameter counts."""
    flat = flatten(params)
    self.total_dimension = int(sum(int(np.prod(v.shape)) for v in flat.values()))
    self.prunable_dimension = int(sum(int(np.prod(v.shape)) for k, v in flat.items()
                                      if is_prunable(k, v)))
    if self.active() and not self.prunable_dimension:
      raise ConfigError(f"config.mask.density={self.density} < 1 but the model has no conv/dense "
                        "kernels to mask")

  def mask_for(self, epoch: int, params: PyTree) -> Optional[PyTree]:
    """The mask in force at `epoch` (drawn at the start of `start_epoch`), or None."""
    if self.active() and self.mask is None and epoch >= self.start_epoch:
      if self.kind == "random":
        self.mask = random_masks(params, density=self.density, seed=self.seed, scope=self.scope)
      else:
        self.mask = magnitude_masks(jax.device_get(params), sparsity=1.0 - self.density,
                                    scope=self.scope)
    return self.mask

  def combine(self, epoch: int, params: PyTree, choice: Any) -> Any:
    """The gradient rule's `choice` (grad_rules.RuleChoice) with this mask in force: the mask
    (times the rule's own, e.g. DP pruning) becomes the operand 'mask', the rule masks the
    gradient, the projection zeroes the masked weights. Unchanged before the mask is drawn."""
    if self.mask_for(epoch, params) is None:
      return choice
    inner_operands, inner_project = choice.operands, choice.project
    if self._cache[0] is not inner_operands or self._cache[1] is not self.mask:
      mask = flat_operand_mask(self.mask)
      other = (inner_operands or {}).get("mask") or {}
      mask = {k: mask.get(k, 1.0) * np.asarray(other.get(k, 1.0), np.float32)
              for k in {**mask, **other}}
      self._cache = (inner_operands, self.mask, {**(inner_operands or {}), "mask": mask})
    operands = self._cache[2]

    def project(params, ops):
      params = inner_project(params, ops) if inner_project is not None else params
      return apply_flat_mask(params, ops["mask"])

    return dataclasses.replace(choice, key=(choice.key, "mask"), rule=masked_rule(choice.rule),
                               project=project, operands=operands)

  def results(self) -> dict[str, Any]:
    """The achieved density and counts, for results.json."""
    if self.mask is None:
      kept = self.prunable_dimension
    else:
      kept = sum(int(np.sum(np.asarray(v) != 0)) for k, v in flatten(self.mask).items()
                 if is_prunable(k, v))
    out = {"mask_kind": self.kind, "mask_density": (kept / self.prunable_dimension
                                                    if self.prunable_dimension else 1.0)}
    if self.total_dimension is not None:
      out["trainable_dimension"] = self.total_dimension - (self.prunable_dimension - kept)
      out["total_dimension"] = self.total_dimension
    return out

  def state_dict(self) -> dict[str, Any]:
    return {"mask": encode_mask(self.mask) if self.mask is not None else None}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    if state and state.get("mask") is not None:
      self.mask = decode_mask(state["mask"])


def from_config(config: Any) -> Optional[MaskPlan]:
  """The MaskPlan of `config.mask`, or None when the config has no such section."""
  section = config.get("mask") if hasattr(config, "get") else None
  if section is None:
    return None
  if not hasattr(section, "keys"):
    raise ConfigError(f"config.mask={section!r} must be a section (config_lib.MASK_DEFAULTS)")
  return MaskPlan(section, seed=config.seed)
