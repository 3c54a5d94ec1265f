"""The poison artifact that crosses stages (substitute -> craft -> victim), its dataset
fingerprint, and the validation of `config.attack.*`.

An artifact is two files in the crafting run's directory: `poisons.npz` (base indices into the
train split, float32 perturbations in pixel space, target ids, the trigger) and `poisons.json`
(attack, classes, eps, budget, the substitute's run id, the fingerprint of the train split the
poisons were made for). The victim stage checks the fingerprint before applying them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Optional

import numpy as np

from robustdata.data import records
from robustdata.poisoning.supervised_triggers import SUPERVISED_TRIGGERS
from robustdata.registry import ConfigError

ATTACKS = ("gradient_matching", "bullseye", "sleeper_agent", "hidden_trigger")
BACKDOORS = ("sleeper_agent", "hidden_trigger")  # a trigger at test time; sleeper: source class
SOURCE_CLASS_DEFAULT = 1  # craft.ATTACK_DEFAULTS['source_class']
NPZ_NAME, JSON_NAME = "poisons.npz", "poisons.json"


def dataset_fingerprint(x, y: np.ndarray, *, chunk_bytes: int = 1 << 26) -> str:
  """sha256 over the shapes, dtypes and bytes of the train images and labels, 16 hex chars.

  The images stream through the hash in row chunks of about `chunk_bytes` (C order, so the
  digest does not depend on the chunking): a lazy `x` (records.RecordArray) is read by rows,
  never materialised, and gives the digest of the same data in memory."""
  h = hashlib.sha256()
  for a in (x, y):
    a = a if records.is_lazy(a) else np.atleast_1d(np.asarray(a))  # a scalar hashes as (1,)
    shape = tuple(a.shape)
    h.update(f"{shape}|{np.dtype(a.dtype).str}|".encode())
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(a.dtype).itemsize)
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, shape[0], step):
      h.update(np.ascontiguousarray(a[start:start + step]).tobytes())
  return h.hexdigest()[:16]


@dataclasses.dataclass
class PoisonArtifact:
  """Crafted poisons: perturbations[i] is added to train image base_indices[i].

  target_ids: test-split indices of the targets (for Sleeper Agent: the source class);
  adversarial_class: the class the targets (or triggered sources) should be classified as.
  """

  attack: str
  base_indices: np.ndarray
  perturbations: np.ndarray
  target_ids: np.ndarray
  adversarial_class: int
  eps: float
  budget: float
  substitute_run_id: str
  data_fingerprint: str
  trigger: Optional[np.ndarray] = None
  extra: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.base_indices = np.asarray(self.base_indices, np.int64).reshape(-1)
    self.perturbations = np.asarray(self.perturbations, np.float32)
    self.target_ids = np.asarray(self.target_ids, np.int64).reshape(-1)
    if self.trigger is not None:
      self.trigger = np.asarray(self.trigger, np.float32)
    if len(self.base_indices) != len(self.perturbations):
      raise ValueError(f"{len(self.base_indices)} base indices but {len(self.perturbations)} "
                       "perturbations")

  def save(self, directory: str) -> str:
    """Writes poisons.npz and poisons.json into `directory`; returns the directory."""
    os.makedirs(directory, exist_ok=True)
    arrays = {"base_indices": self.base_indices, "perturbations": self.perturbations,
              "target_ids": self.target_ids}
    if self.trigger is not None:
      arrays["trigger"] = self.trigger
    np.savez(os.path.join(directory, NPZ_NAME), **arrays)
    meta = {"attack": self.attack, "adversarial_class": int(self.adversarial_class),
            "eps": float(self.eps), "budget": float(self.budget),
            "substitute_run_id": self.substitute_run_id,
            "data_fingerprint": self.data_fingerprint, "extra": self.extra}
    with open(os.path.join(directory, JSON_NAME), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True)
    return directory

  @classmethod
  def load(cls, directory: str) -> "PoisonArtifact":
    """Reads what `save` wrote, bit for bit."""
    with open(os.path.join(directory, JSON_NAME)) as f:
      meta = json.load(f)
    with np.load(os.path.join(directory, NPZ_NAME)) as z:
      arrays = {k: z[k] for k in z.files}
    return cls(trigger=arrays.pop("trigger", None), **arrays, **meta)

  def check_fingerprint(self, expected: str) -> None:
    """ConfigError unless the poisons were crafted for the train split with this fingerprint."""
    if self.data_fingerprint != expected:
      raise ConfigError(
          f"poisons ({self.attack}, substitute run {self.substitute_run_id}) were crafted for "
          f"a train split with fingerprint {self.data_fingerprint}, but this run's train split "
          f"has fingerprint {expected}; re-craft the poisons for this config.data")

  def apply(self, train_images: np.ndarray) -> np.ndarray:
    """A copy of the train images with clip(x + δ, 0, 1) at the base indices."""
    x = np.array(train_images, np.float32, copy=True)
    if len(self.base_indices) and (self.base_indices.min() < 0
                                   or self.base_indices.max() >= len(x)):
      raise ConfigError(f"poisons: base indices reach {self.base_indices.max()} but the train "
                        f"split has {len(x)} images")
    if x.shape[1:] != self.perturbations.shape[1:]:
      raise ConfigError(f"poisons: perturbations of shape {self.perturbations.shape[1:]} do not "
                        f"fit train images of shape {x.shape[1:]}")
    x[self.base_indices] = np.clip(x[self.base_indices] + self.perturbations, 0.0, 1.0)
    return x


def poison_count(budget: float, num_train: int) -> int:
  """Number of poisons for a budget given as a fraction of the train split (reference: 0.01)."""
  return int(round(budget * num_train))


def _get(cfg: Any, name: str, default: Any = None) -> Any:
  try:
    return cfg[name] if name in cfg else default
  except TypeError:
    return getattr(cfg, name, default)


def _is_int(v: Any) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate_attack(attack: Mapping[str, Any], *, num_train_per_class: np.ndarray, num_test: int,
                    num_classes: int, test_labels: np.ndarray) -> int:
  """Checks `config.attack` against the data; returns the number of poisons.

  Fields: name (one of ATTACKS), eps (0 < eps <= 1, pixel units), budget (fraction of the
  train split; 0 < count <= images of the base class, which is adversarial_class),
  adversarial_class, target_index (an index or a list into the test split, not of the
  adversarial class; required by every attack but Sleeper Agent, and for the Hidden Trigger
  Backdoor its class is the source class, as in the benchmark), source_class (Sleeper Agent
  only: the class whose triggered images should become adversarial_class; not
  adversarial_class itself; the other attacks do not read it and refuse another value than
  SOURCE_CLASS_DEFAULT), trigger (backdoors: one of SUPERVISED_TRIGGERS). Each error names its
  field.
  """
  name = _get(attack, "name")
  if name not in ATTACKS:
    raise ConfigError(f"config.attack.name={name!r} is not known; allowed: {list(ATTACKS)}")
  eps = _get(attack, "eps")
  if not isinstance(eps, (int, float, np.floating)) or isinstance(eps, bool) or not 0 < eps <= 1:
    raise ConfigError(f"config.attack.eps={eps!r} must be in (0, 1] (pixel units, e.g. 8/255)")
  adv = _get(attack, "adversarial_class")
  if not _is_int(adv) or not 0 <= adv < num_classes:
    raise ConfigError(f"config.attack.adversarial_class={adv!r} must be an int in "
                      f"[0, {num_classes})")
  per_class = np.asarray(num_train_per_class)
  budget = _get(attack, "budget")
  if not isinstance(budget, (int, float, np.floating)) or isinstance(budget, bool) or budget <= 0:
    raise ConfigError(f"config.attack.budget={budget!r} must be a fraction of the train split "
                      "in (0, 1] (reference: 0.01)")
  count = poison_count(float(budget), int(per_class.sum()))
  if count < 1 or count > per_class[adv]:
    raise ConfigError(f"config.attack.budget={budget!r} gives {count} poisons; allowed: 1 to the "
                      f"{int(per_class[adv])} train images of the base class {adv} "
                      "(config.attack.adversarial_class)")
  src = _get(attack, "source_class")
  if name == "sleeper_agent":
    if not _is_int(src) or not 0 <= src < num_classes:
      raise ConfigError(f"config.attack.source_class={src!r} must be an int in [0, {num_classes})")
    if src == adv:
      raise ConfigError(f"config.attack.source_class={src} equals config.attack.adversarial_class;"
                        " the backdoor must move another class")
  elif src is not None and src != SOURCE_CLASS_DEFAULT:
    raise ConfigError(f"config.attack.source_class={src!r} is read by sleeper_agent only; "
                      f"{name}'s source class is the class of its target image "
                      f"(config.attack.target_index); leave source_class at {SOURCE_CLASS_DEFAULT}")
  target = _get(attack, "target_index")
  if name != "sleeper_agent" or target is not None:
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    for t in targets:
      if not _is_int(t) or not 0 <= t < num_test:
        raise ConfigError(f"config.attack.target_index={target!r} must index the test split, "
                          f"[0, {num_test})")
      if int(np.asarray(test_labels)[t]) == adv:
        raise ConfigError(f"config.attack.target_index={t} is of class {adv}, the same as "
                          "config.attack.adversarial_class; pick a target of another class")
  if name in BACKDOORS:
    trigger = _get(attack, "trigger")
    if trigger not in SUPERVISED_TRIGGERS:
      raise ConfigError(f"config.attack.trigger={trigger!r} is not known; "
                        f"allowed: {list(SUPERVISED_TRIGGERS)}")
  return count
