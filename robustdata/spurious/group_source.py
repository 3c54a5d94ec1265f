"""Where a supervised run's train groups come from: the annotations of its data source (no
`config.group_stage`, the default), or the partition inferred by an upstream group-inference
stage (`config.group_stage`, a whole config of trainer 'group_inference'; `infer_stage.py`).

`training_view` gives the policy, the objective and the batch loader the splits with the
inferred train groups (and their number; SPARE inference's per-class sampling powers as the
train extra SAMPLING_POWER; CnC inference's per-example attribute, the reference's predicted
class, as the train extra INFERRED_ATTRIBUTE), so GroupDRO, group-balanced batches,
up/down-sampling, PDE's warm-up, DFR's head on `held_out='train'` and Correct-n-Contrast read
them unchanged; evaluation keeps the annotated splits (val/test true groups, the true train
proportions for average accuracy).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from robustdata import runner
from robustdata.poisoning.artifact import dataset_fingerprint
from robustdata.registry import ConfigError
from robustdata.spurious import inference

FIELD = "config.group_stage"
# What reads the train split's groups: data policies, objectives (config.method).
GROUP_POLICIES = ("upsample", "downsample", "group_balanced", "spare", "pde", "cnc")
# The train split's extra holding each example's class sampling power from a SPARE inference
# stage (its partition's extra 'sampling_powers', per class), read by the 'spare' policy.
SAMPLING_POWER = "inferred_sampling_power"
# The train split's extra holding each example's inferred spurious attribute, from an inference
# stage whose partition records one per group (extra 'group_attribute': method 'cnc').
INFERRED_ATTRIBUTE = "inferred_spurious_attribute"
GROUP_METHODS = ("groupdro", "cnc")


def uses_inferred_groups(config) -> bool:
  return "group_stage" in config


def check_consumer(config) -> None:
  """ConfigError unless the run's policy or objective reads train groups (inferred groups
  nothing reads are a mistake), and nothing reads annotations beside them."""
  policy, method = config.policy.name, config.method
  dfr_train = method == "dfr" and (config.get("dfr") or {}).get("held_out", "val") == "train"
  if method == "dfr" and not dfr_train:
    raise ConfigError(f"{FIELD} gives inferred train groups, but config.method='dfr' refits on "
                      "the annotated groups of config.dfr.held_out='val'; set "
                      "config.dfr.held_out='train' to refit on the inferred groups")
  if policy not in GROUP_POLICIES and method not in GROUP_METHODS and not dfr_train:
    raise ConfigError(f"{FIELD} gives inferred train groups, but neither config.policy.name="
                      f"{policy!r} nor config.method={method!r} reads train groups; allowed "
                      f"policies: {list(GROUP_POLICIES)}, methods: {list(GROUP_METHODS)} or "
                      "'dfr' with config.dfr.held_out='train'")
  if policy == "pde" and config.policy.get("same_across_class", False):
    raise ConfigError(f"{FIELD} with config.policy.same_across_class=True: that rebuild reads "
                      "the annotated spurious attribute; set it False with inferred groups")


def load_partition(config, data, run_dir: str) -> inference.GroupPartition:
  """The partition of the finished stage `config.group_stage`, checked against this run's train
  split (fingerprint, size, no empty group)."""
  directory = runner.stage_dir(config, "group_stage", run_dir)
  if not os.path.exists(os.path.join(directory, inference.NPZ_NAME)):
    raise ConfigError(f"{FIELD}: the inference run {directory} holds no groups; run the "
                      "inference stage first (runner.run does)")
  part = inference.GroupPartition.load(directory)
  part.check(fingerprint=dataset_fingerprint(data.train.x, data.train.y),
             num_examples=len(data.train), field=FIELD)
  return part


def training_view(config, data, run_dir: str):
  """`data` with the inferred train groups of `config.group_stage` (num_groups and names the
  partition's), or `data` itself when the run uses the annotated groups."""
  if not uses_inferred_groups(config):
    return data
  if config.group_stage.get("trainer") != "group_inference":
    raise ConfigError(f"{FIELD} must be the config of a group-inference stage (trainer "
                      f"'group_inference'), got trainer {config.group_stage.get('trainer')!r}")
  check_consumer(config)
  part = load_partition(config, data, run_dir)
  train = data.train.replace(groups=part.groups)
  powers = part.extra.get("sampling_powers")
  if powers is not None:
    train = train.replace(extras={**train.extras, SAMPLING_POWER: np.asarray(
        powers, np.float64)[train.y]})
  attribute = part.extra.get("group_attribute")
  if attribute is not None:
    train = train.replace(extras={**train.extras, INFERRED_ATTRIBUTE: np.asarray(
        attribute, np.int32)[train.groups]})
  return dataclasses.replace(data, train=train, num_groups=part.num_groups,
                             group_names=part.group_names)


def spurious_attribute(config, train, *, who: str) -> np.ndarray:
  """The per-example spurious attribute training reads: the inferred one (INFERRED_ATTRIBUTE)
  with `config.group_stage`, else the annotated `train.spurious`; a ConfigError naming the
  field when there is none. `who` names the reader (e.g. "config.method='cnc'")."""
  if uses_inferred_groups(config):
    attribute = train.extras.get(INFERRED_ATTRIBUTE)
    if attribute is None:
      method = (config.group_stage.get("inference") or {}).get("method")
      raise ConfigError(f"{who} needs a spurious attribute per train example, but the inference "
                        f"stage {FIELD} (config.group_stage.inference.method={method!r}) infers "
                        "groups without one; use config.group_stage.inference.method='cnc' "
                        "(the reference's predicted class as the attribute)")
    return np.asarray(attribute, np.int32)
  if train.spurious is None:
    name = config.data.get("name", "") if "data" in config else ""
    raise ConfigError(f"{who} needs a spurious attribute per train example, but config.data.name="
                      f"{name!r} annotates none; use a source with one (e.g. 'spuco_digits') or "
                      f"set {FIELD} to an inference stage with method 'cnc'")
  return np.asarray(train.spurious, np.int32)
