"""The group-inference stage, registered as trainer 'group_inference': a partition of the train
split inferred from the final model of the upstream reference stage (`config.reference`, a
whole supervised config, e.g. an early-stopped ERM) and written into this run's directory as a
`GroupPartition` (groups.npz + groups.json) that group-robust runs read through
`config.group_stage` (`group_source.py`).

It is a `Task` of the one loop driver with one epoch of one step (the inference), checkpointed
with the partition, so a finished inference is never recomputed and a killed one reruns its
step. Where the train split has true groups, results.json scores the partition against them
(adjusted Rand index, minority-group recall and precision).

`config.inference` (INFERENCE_DEFAULTS): the method and its settings; method 'ssa' also needs
every field of SSA_DEFAULTS there (its attribute predictor reads the inputs and the group labels
of the val split, not only the reference's outputs).
"""

from __future__ import annotations

import os
import time
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustdata import config_lib
from robustdata import run_dir as run_dir_lib
from robustdata import runner
from robustdata import validation
from robustdata.data import sources
from robustdata.poisoning.artifact import dataset_fingerprint
from robustdata.registry import TRAINERS, ConfigError, check_known_fields, field_reader
from robustdata.spurious import inference
from robustdata.spurious import ssa
from robustdata.train import sharding as sharding_lib
from robustdata.train.driver import Driver, Loop, Task, abstract_on
from robustdata.train.evaluate import Evaluator
from robustdata.train.supervised import restore_model

METHODS = ("jtt", "cluster", "spare", "eiil", "ssa", "cnc")
FEATURES = ("logits", "probs", "features")
ALGORITHMS = ("kmeans", "gmm")
# config.inference: every field with its default.
INFERENCE_DEFAULTS: dict[str, Any] = {
    "method": "jtt",          # jtt, cluster, spare, eiil, ssa, cnc (class, ERM prediction)
    "features": "logits",     # cluster: the reference's logits, softmax probs or penultimate
                              # features (spare always clusters probs)
    "algorithm": "kmeans",    # cluster: kmeans or gmm (diagonal Gaussian mixture)
    "min_clusters": 2,        # cluster/spare: clusters per class searched by silhouette
    "max_clusters": 4,
    "silhouette_threshold": 0.9,  # spare: below it a class gets high_sampling_power
    "high_sampling_power": 2.0,
    "eiil_steps": 2000,       # eiil: Adam steps of gradient ascent on the env logits
    "eiil_lr": 0.01,
    "seed": 0,                # clustering restarts, EIIL's initial env logits
}
SSA_INPUTS = ("inputs", "features")
# config.inference fields of method 'ssa' (all required with it, so they are in its run id).
SSA_DEFAULTS: dict[str, Any] = {
    "ssa_labelled_fraction": 1.0,  # the fraction of the val split whose group labels SSA uses
    "ssa_select_fraction": 0.5,    # of those, the part that selects the predictor (not fit)
    "ssa_num_splits": 3,           # train folds; each is labelled by a predictor whose
                                   # pseudo-labels come from the other folds
    "ssa_threshold": 0.95,         # confidence a pseudo-label needs (SpuCo's tau)
    "ssa_input": "inputs",         # inputs (flattened) or the reference's penultimate features
    "ssa_hidden": 64,              # the predictor's hidden width (0: softmax regression)
    "ssa_steps": 500,              # SGD steps per predictor
    "ssa_lr": 0.01,                # SGD (momentum 0.9) learning rate, SpuCo's
    "ssa_weight_decay": 5e-4,      # SpuCo's
    "ssa_batch_size": 128,
}


class GroupInferenceTask(Task):
  """Infers a group partition of the train split from the reference model (see module doc)."""

  loss_name = "inference score"
  nan_hint = "Check the reference stage (config.reference) finished with finite outputs."

  def validate(self, config, *, num_devices: int) -> None:
    if "reference" not in config or config.reference.get("trainer") != "supervised":
      raise ConfigError("config.reference must be the config of a supervised run (the reference "
                        "model groups are inferred from, e.g. an early-stopped ERM)")
    if "inference" not in config:
      raise ConfigError("config.inference is missing; build it from "
                        "robustdata.spurious.infer_stage.INFERENCE_DEFAULTS")
    check_known_fields(config.inference, {**INFERENCE_DEFAULTS, **SSA_DEFAULTS},
                       "config.inference")
    validate_inference(config.inference)
    if config.data != config.reference.data:
      raise ConfigError("config.data must equal config.reference.data (groups are inferred for "
                        "the reference's train split)")
    config_lib.validate(config, num_devices=num_devices)

  def setup(self, driver: Driver) -> None:
    config = self.config = driver.config
    self.driver = driver
    self.get = field_reader(config.inference, {**INFERENCE_DEFAULTS, **SSA_DEFAULTS})
    self.data = sources.load(config.data)
    self.ref_dir = runner.stage_dir(config, "reference", driver.run_dir)
    self.model, self.variables = restore_model(config.reference, self.ref_dir, self.data)
    self.repl = sharding_lib.replicated(driver.mesh)
    n = len(self.data.train)
    self.abstract = {"groups": jax.ShapeDtypeStruct((n,), jnp.int32),
                     "score": jax.ShapeDtypeStruct((), jnp.float32)}
    self.info: dict[str, Any] = {}
    self.inference_time_s = 0.0

  def abstract_state(self) -> Any:
    return abstract_on(self.abstract, jax.tree.map(lambda _: self.repl, self.abstract))

  def init_state(self) -> Any:
    return jax.device_put({"groups": jnp.zeros(len(self.data.train), jnp.int32),
                           "score": jnp.zeros((), jnp.float32)}, self.repl)

  def host_state(self) -> dict[str, Any]:
    return {"info": self.info, "inference_time_s": self.inference_time_s}

  def load_host_state(self, saved: dict[str, Any]) -> None:
    self.info = dict(saved.get("info") or {})
    self.inference_time_s = float(saved.get("inference_time_s", 0.0))

  def epochs(self) -> int:
    return 1

  def expected_steps(self) -> int:
    return 1

  def start_epoch(self, loop: Loop) -> int:
    return 1

  def outputs(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(logits, penultimate features) of the reference model on a split (eval mode)."""
    evaluator = Evaluator(self.model, self.driver.mesh,
                          batch_size=int(self.config.train.eval_batch_size))
    variables = dict(self.variables)
    state = types.SimpleNamespace(params=variables.pop("params"), model_state=variables)
    return evaluator.logits_and_features(state, self.data.splits()[split])

  def infer_ssa(self) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any], float]:
    """SSA on the group-labelled part (`ssa_labelled_fraction`) of the val split; the score is
    the predictors' mean attribute accuracy on the labelled selection part."""
    get, train, val = self.get, self.data.train, self.data.val
    if len(val) == 0 or val.spurious is None:
      raise ConfigError(f"config.inference.method='ssa' needs the spurious attribute on the val "
                        f"split, but config.data (name={self.config.data.name!r}) gives "
                        f"{'an empty val split' if len(val) == 0 else 'none'}")
    rng = np.random.default_rng(np.random.SeedSequence([int(get("seed")), 0x55A1]))
    labelled = np.sort(rng.permutation(len(val))[:max(1, int(round(
        float(get("ssa_labelled_fraction")) * len(val))))])
    if get("ssa_input") == "features":
      z_train, z_val = self.outputs("train")[1], self.outputs("val")[1][labelled]
    else:
      z_train = train.x.reshape(len(train), -1)
      z_val = val.x[labelled].reshape(len(labelled), -1)
    groups, names, info = ssa.ssa_groups(
        np.asarray(z_train, np.float32), train.y, np.asarray(z_val, np.float32), val.y[labelled],
        val.spurious[labelled], num_classes=self.data.num_classes,
        num_splits=int(get("ssa_num_splits")), threshold=float(get("ssa_threshold")),
        select_fraction=float(get("ssa_select_fraction")), hidden=int(get("ssa_hidden")),
        steps=int(get("ssa_steps")), lr=float(get("ssa_lr")),
        weight_decay=float(get("ssa_weight_decay")), batch_size=int(get("ssa_batch_size")),
        seed=int(get("seed")))
    info["ssa_labelled"] = int(len(labelled))
    return groups, names, info, float(np.mean(info["ssa_select_accuracy"]))

  def train_step(self, loop: Loop, i: int) -> tuple[dict[str, Any], int]:
    del loop, i
    t0 = time.perf_counter()
    if self.get("method") == "ssa":
      groups, names, info, score = self.infer_ssa()
    else:
      logits, features = self.outputs()
      groups, names, info, score = infer(self.get, logits, features, self.data.train.y,
                                         num_classes=self.data.num_classes)
    self.inference_time_s += time.perf_counter() - t0
    self.info = {"group_names": list(names), **info}
    self.state = jax.device_put({"groups": jnp.asarray(groups, jnp.int32),
                                 "score": jnp.asarray(score, jnp.float32)}, self.repl)
    return {"loss": jnp.asarray(score, jnp.float32)}, len(groups)

  def results(self, loop: Loop, wall_time_s: float) -> dict[str, Any]:
    state = jax.device_get(self.state)
    train, info = self.data.train, dict(self.info)
    names = info.pop("group_names")
    part = inference.GroupPartition(
        groups=np.asarray(state["groups"]), group_names=names, method=self.get("method"),
        run_id=os.path.basename(os.path.abspath(self.driver.run_dir)),
        reference_run_id=os.path.basename(self.ref_dir),
        data_fingerprint=dataset_fingerprint(train.x, train.y), extra=info)
    run_dir_lib.on_primary(lambda: part.save(self.driver.run_dir), what="write the groups")
    counts = np.bincount(part.groups, minlength=part.num_groups)
    out: dict[str, Any] = {
        "method": "group_inference", "inference_method": part.method,
        "num_inferred_groups": part.num_groups, "inferred_group_counts": counts.tolist(),
        "inferred_group_names": list(part.group_names), "reference_run_id": part.reference_run_id,
        "data_fingerprint": part.data_fingerprint, "inference_time_s": self.inference_time_s,
        "inference_score": float(state["score"])}
    out.update({f"inference_{k}": v for k, v in info.items()})
    if train.groups is not None:
      out.update(inference.quality(part.groups, train.groups, train.y))
    return out


def validate_inference(section) -> None:
  """ConfigError naming the field for a bad config.inference."""
  get = field_reader(section, {**INFERENCE_DEFAULTS, **SSA_DEFAULTS})
  for field, allowed in (("method", METHODS), ("features", FEATURES),
                         ("algorithm", ALGORITHMS)):
    if get(field) not in allowed:
      raise ConfigError(f"config.inference.{field}={get(field)!r} is not known; allowed: "
                        f"{list(allowed)}")
  for field in ("min_clusters", "max_clusters"):
    value = get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
      raise ConfigError(f"config.inference.{field}={value!r} must be an int >= 2 (a class split "
                        "into fewer than 2 clusters gives no minority group)")
  if get("max_clusters") < get("min_clusters"):
    raise ConfigError(f"config.inference.max_clusters={get('max_clusters')} must be >= "
                      f"config.inference.min_clusters={get('min_clusters')}")
  steps = get("eiil_steps")
  if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
    raise ConfigError(f"config.inference.eiil_steps={steps!r} must be an int >= 1")
  for field in ("eiil_lr", "high_sampling_power"):
    if not isinstance(get(field), (int, float)) or isinstance(get(field), bool) or get(field) <= 0:
      raise ConfigError(f"config.inference.{field}={get(field)!r} must be > 0")
  if get("method") == "ssa":
    missing = [k for k in SSA_DEFAULTS if k not in section.keys()]
    if missing:
      raise ConfigError(f"config.inference.method='ssa' needs config.inference.{missing[0]} "
                        f"(missing: {missing}); build config.inference from INFERENCE_DEFAULTS "
                        "and SSA_DEFAULTS of robustdata.spurious.infer_stage")
    validation.check_ranges({"inference": {k: get(k) for k in SSA_DEFAULTS}})


def infer(get, logits: np.ndarray, features: np.ndarray, labels: np.ndarray, *,
          num_classes: int) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any], float]:
  """(groups, names, info, score) of method get('method') on the reference's outputs; the score
  is the error rate (jtt, cnc), the mean silhouette (cluster, spare) or the final IRM penalty.
  Method 'cnc' records each group's attribute (the predicted class) as info 'group_attribute',
  which `group_source.training_view` turns into the per-example inferred attribute."""
  method, seed = get("method"), int(get("seed"))
  clusters = dict(min_clusters=int(get("min_clusters")), max_clusters=int(get("max_clusters")),
                  seed=seed)
  if method == "jtt":
    groups, names = inference.jtt_groups(logits, labels, num_classes=num_classes)
    return groups, names, {}, float(np.mean(np.argmax(logits, -1) != labels))
  if method == "cnc":
    groups, names, attribute = inference.prediction_groups(logits, labels,
                                                           num_classes=num_classes)
    return (groups, names, {"group_attribute": attribute},
            float(np.mean(np.argmax(logits, -1) != labels)))
  if method == "eiil":
    groups, names, info = inference.eiil_groups(logits, labels, num_classes=num_classes,
                                                steps=int(get("eiil_steps")),
                                                lr=float(get("eiil_lr")), seed=seed)
    return groups, names, info, info["irm_penalty_final"]
  probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))
  if method == "spare":
    groups, names, info = inference.spare_groups(
        probs, labels, num_classes=num_classes,
        silhouette_threshold=float(get("silhouette_threshold")),
        high_sampling_power=float(get("high_sampling_power")), **clusters)
  else:
    z = {"logits": logits, "probs": probs, "features": features}[get("features")]
    groups, names, info = inference.cluster_groups(z, labels, num_classes=num_classes,
                                                   algorithm=get("algorithm"), **clusters)
  return groups, names, info, float(np.nanmean(info["silhouette_per_class"]))


@TRAINERS.register("group_inference")
def train_group_inference(config, run_dir: str) -> dict[str, Any]:
  """The group-inference stage (see the module docstring)."""
  return Driver(config, run_dir).run(GroupInferenceTask())


train_group_inference.task = GroupInferenceTask  # runner.validate_chain validates with it
