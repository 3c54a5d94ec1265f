"""The victim stage of a clean-label poisoning experiment, registered as trainer 'poison_victim':
a model trained from scratch on the train split with the crafted poisons applied, optionally
under the Friendly Noise defence, reporting clean accuracy and attack success.

It is the supervised task (`train/supervised.py`) with three changes, so every data policy,
objective and gradient rule composes with it (DP-SGD is the `config.privacy` baseline):
- data: the poisons of the upstream crafting stage (`config.poisons`, a whole config; its run
  directory is found by its run id) are applied to the train split after their dataset
  fingerprint is checked;
- input: inside the step, clip(x + friendly noise, 0, 1) + fresh bounded random noise
  (`config.friendly`; each component can be switched off), before augmentation;
- Friendly Noise is generated at `config.friendly.begin_epoch` from the model of that moment,
  stored in the run directory batch by batch (a killed generation resumes) and kept for the
  rest of the run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import jax
import numpy as np

from robustdata import runner
from robustdata.data import noise as noise_lib
from robustdata.data import sources
from robustdata.poisoning import artifact as artifact_lib
from robustdata.poisoning import friendly_noise as friendly_lib
from robustdata.poisoning import supervised_triggers
from robustdata.registry import TRAINERS, ConfigError, check_known_fields, field_reader
from robustdata import run_dir as run_dir_lib
from robustdata.train import sharding as sharding_lib
from robustdata.train.driver import Driver, Loop
from robustdata.train.supervised import SupervisedTask, restore_model

NOISE_DIR = "friendly_noise"
# config.victim: how the victim starts and what it trains. 'scratch' + 'all' is training from
# scratch (gradient matching, Sleeper Agent); 'substitute' + 'last_layer' is the benchmark's
# transfer setting (the pre-trained feature extractor frozen, a new classifier 'head' trained;
# Bullseye Polytope, HTB); 'substitute' + 'all' + head 'substitute' fine-tunes the whole
# substitute on the poisoned data. `head`: a 'new' classifier or the 'substitute''s.
# `poisoned=False` is the experiment's control: the same victim on the clean train split.
VICTIM_DEFAULTS = {"init": "scratch", "trainable": "all", "head": "new", "poisoned": True}


def defence_name(config) -> str:
  """A short name of the run's defence for tables: none, random, friendly, friendly+random,
  dp_sgd, epic (or a combination); 'clean' for the control without poisons."""
  if not field_reader(config.get("victim"), VICTIM_DEFAULTS)("poisoned"):
    return "clean"
  get = field_reader(config.get("friendly"), friendly_lib.DEFAULTS)
  parts = [p for p, on in (("friendly", get("enabled")), ("random", get("noise_kind") != "none"),
                           ("dp_sgd", config.privacy.mode == "dp_sgd"),
                           ("epic", config.policy.name == "epic")) if on]
  return "+".join(parts) or "none"


class VictimTask(SupervisedTask):
  """Supervised training on poisoned data with the Friendly Noise input transform."""

  def validate(self, config, *, num_devices: int) -> None:
    super().validate(config, num_devices=num_devices)
    if "poisons" not in config or config.poisons.get("trainer") != "poison_craft":
      raise ConfigError("config.poisons must be the config of a crafting stage (trainer "
                        "'poison_craft'); see configs/friendly_noise/")
    if "friendly" not in config:
      raise ConfigError("config.friendly is missing; build it from "
                        "robustdata.poisoning.friendly_noise.DEFAULTS")
    check_known_fields(config.friendly, friendly_lib.DEFAULTS, "config.friendly")
    friendly_lib.validate_friendly(config.friendly)
    victim = config.get("victim") or {}
    check_known_fields(victim, VICTIM_DEFAULTS, "config.victim")
    get = field_reader(victim, VICTIM_DEFAULTS)
    for field, allowed in (("init", ("scratch", "substitute")), ("trainable", ("all", "last_layer")),
                           ("head", ("new", "substitute"))):
      if get(field) not in allowed:
        raise ConfigError(f"config.victim.{field}={get(field)!r} is not known; allowed: "
                          f"{list(allowed)}")
    if not isinstance(get("poisoned"), bool):
      raise ConfigError(f"config.victim.poisoned={get('poisoned')!r} must be True or False")
    if get("head") == "substitute" and get("init") != "substitute":
      raise ConfigError("config.victim.head='substitute' needs config.victim.init='substitute'")
    if get("init") == "substitute" and config.model != config.poisons.substitute.model:
      raise ConfigError("config.victim.init='substitute' needs config.model to equal "
                        "config.poisons.substitute.model")

  def setup(self, driver: Driver) -> None:
    self.driver = driver  # load_data needs the run directory
    self.friendly = field_reader(driver.config.friendly, friendly_lib.DEFAULTS)
    self.victim = field_reader(driver.config.get("victim"), VICTIM_DEFAULTS)
    self.frozen = None
    self._substitute: Optional[dict[str, Any]] = None
    self.noise: Optional[np.ndarray] = None
    self._zeros = None  # the Friendly Noise of a resident batch before the noise exists
    self.noise_info: dict[str, Any] = {}
    super().setup(driver)

  def load_data(self, config):
    data = sources.load(config.data)
    directory = runner.stage_dir(config, "poisons", self.driver.run_dir)
    if not os.path.exists(os.path.join(directory, artifact_lib.NPZ_NAME)):
      raise ConfigError(f"config.poisons: the crafting run {directory} holds no poisons; "
                        "run the crafting stage first (runner.run does)")
    self.artifact = artifact_lib.PoisonArtifact.load(directory)
    self.artifact.check_fingerprint(artifact_lib.dataset_fingerprint(data.train.x, data.train.y))
    self.clean_test = data.test
    if not self.victim("poisoned"):  # the control: the poisons' targets, the clean train split
      return data
    return dataclasses.replace(data, train=data.train.replace(x=self.artifact.apply(data.train.x)))

  # --- Transfer: start from the substitute, optionally train the last layer only. -----------

  def substitute_variables(self) -> dict[str, Any]:
    """The substitute's final eval variables (restored from its run once)."""
    if self._substitute is None:
      craft_dir = runner.stage_dir(self.config, "poisons", self.driver.run_dir)
      sub_dir = runner.stage_dir(self.config.poisons, "substitute", craft_dir)
      _, self._substitute = restore_model(self.config.poisons.substitute, sub_dir, self.data)
    return self._substitute

  def init_state(self) -> Any:
    state = super().init_state()
    if self.victim("init") != "substitute":
      return state
    variables = dict(self.substitute_variables())  # its extractor (and head, or a fresh one)
    params = dict(variables.pop("params"))
    if self.victim("head") == "new":
      params["head"] = state.params["head"]
    state = state.replace(params=params, model_state=variables, opt_state=self.tx.init(params))
    return jax.device_put(state, self.state_sharding)

  def rule_choice(self, epoch: int):
    choice = super().rule_choice(epoch)
    if self.victim("trainable") != "last_layer":
      return choice
    if self.frozen is None:  # the substitute's layers below the classifier 'head'
      params = self.substitute_variables()["params"]
      if "head" not in params:
        raise ConfigError("config.victim.trainable='last_layer' needs a model whose classifier "
                          f"layer is named 'head' (config.model.name={self.config.model.name!r})")
      self.frozen = {k: v for k, v in params.items() if k != "head"}
    inner, frozen = choice.project, self.frozen

    def project(params, *operands):
      params = inner(params, *operands) if inner is not None else params
      return {k: (frozen[k] if k in frozen else v) for k, v in params.items()}
    return dataclasses.replace(choice, project=project)

  # --- Friendly Noise. ---------------------------------------------------------------------------

  def host_state(self) -> dict[str, Any]:
    return {**super().host_state(), "friendly_noise": self.noise_info}

  def load_host_state(self, saved: dict[str, Any]) -> None:
    super().load_host_state(saved)
    self.noise_info = saved.get("friendly_noise") or {}
    if self.noise_info:  # generated before the checkpoint: read it back, never regenerate
      path = os.path.join(self.driver.run_dir, NOISE_DIR, "noise.npy")
      self.noise = np.load(path)

  def start_epoch(self, loop: Loop) -> int:
    if (self.friendly("enabled") and self.noise is None
        and loop.epoch >= self.friendly("begin_epoch")):
      self._generate(loop)
    return super().start_epoch(loop)

  def _generate(self, loop: Loop) -> None:
    """Friendly noise for every train image from the current model (eval mode)."""
    get = self.friendly
    state, model = self.state, self.model

    def logits_fn(variables, x):
      return model.apply(variables, x, train=False)

    variables = {"params": state.params, **state.model_state}
    out = friendly_lib.generate_friendly_noise(
        logits_fn, variables, self.data.train.x,
        key=jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 0xF1E),
        batch_size=get("batch_size"), iterations=get("iterations"), lr=get("lr"),
        momentum=get("momentum"), nesterov=get("nesterov"), mu=get("mu"), clamp=get("clamp"),
        init=get("init"), loss=get("loss"), milestones=get("milestones"),
        mesh=self.driver.mesh, checkpoint_dir=os.path.join(self.driver.run_dir, NOISE_DIR))
    self.noise = out.noise
    self.noise_info = {"epoch": loop.epoch, "friendly_time_s": out.total_time_s,
                       "friendly_mean_abs": float(np.mean(np.abs(out.noise))),
                       "friendly_mean_divergence": float(np.mean(out.divergence))}
    self.driver.writer.write(loop.step, "friendly_noise", self.noise_info, epoch=loop.epoch)

  def input_transform(self):
    get = self.friendly
    if not get("enabled") and get("noise_kind") == "none":
      return None
    kind, eps, friendly = get("noise_kind"), get("noise_eps"), get("enabled")

    def transform(key, batch):
      return noise_lib.apply_defence_noise(batch["x"], batch["friendly"] if friendly else None,
                                           key=key, kind=kind, eps=eps)
    return transform

  def device_batch(self, indices: np.ndarray, weights: np.ndarray):
    """The loader's batch plus the Friendly Noise of its rows; each process builds only the
    rows its devices hold. With a resident split the noise is gathered on the devices too."""
    if self.loader.resident:
      batch = self.loader.device_batch(indices, weights)
      if self.friendly("enabled"):
        batch["friendly"] = self._device_noise(batch)
      return batch
    rows = sharding_lib.process_rows(self.batch_sharding, self.loader.batch_size)
    batch = self.loader.host_batch(indices, weights, rows=rows)
    if self.friendly("enabled"):  # zeros until the noise exists: one compiled step
      batch["friendly"] = (self.noise[batch["index"]] if self.noise is not None
                           else np.zeros_like(batch["x"]))
    return sharding_lib.put_local(batch, self.batch_sharding, self.loader.batch_size)

  def _device_noise(self, batch) -> jax.Array:
    """The batch's rows of the Friendly Noise from a device copy (zeros until it exists)."""
    if self.noise is None:
      if self._zeros is None:
        self._zeros = jax.device_put(np.zeros(batch["x"].shape, batch["x"].dtype),
                                     self.batch_sharding)
      return self._zeros
    return self.loader.device_rows({"friendly": self.noise}, batch["index"])["friendly"]

  # --- Attack success. ---------------------------------------------------------------------------

  def results(self, loop: Loop, wall_time_s: float) -> dict[str, Any]:
    results = super().results(loop, wall_time_s)
    a = self.artifact
    results.update(attack_success(a, self.predict, self.clean_test))
    results.update({"attack": a.attack, "defence": defence_name(self.config),
                    "poisons_applied": bool(self.victim("poisoned")),
                    "poison_count": int(len(a.base_indices)), "poison_budget": float(a.budget),
                    "poison_eps": float(a.eps), "adversarial_class": int(a.adversarial_class)})
    results.update({k: v for k, v in self.noise_info.items() if k != "epoch"})
    craft = run_dir_lib.read_json_object(os.path.join(
        runner.stage_dir(self.config, "poisons", self.driver.run_dir), "results.json"))
    results.update(craft_time_s=craft["craft_time_s"], craft_objective=craft["craft_objective"])
    return results

  def predict(self, x: np.ndarray) -> np.ndarray:
    """Class predictions of the final model (eval mode) on host images."""
    test = self.clean_test
    ds = test.replace(x=x, y=np.zeros(len(x), test.y.dtype), ids=np.arange(len(x)),
                      groups=None, spurious=None, extras={})
    logits, _ = self.evaluator.logits_and_features(self.state, ds)
    return np.argmax(logits, axis=-1)


def attack_success(a: artifact_lib.PoisonArtifact, predict, test) -> dict[str, Any]:
  """targeted_asr: the fraction of targets predicted as the adversarial class (for the Hidden
  Trigger Backdoor, the target with the trigger pasted); backdoor_asr (backdoors): the fraction
  of trigger-stamped test images of the source class predicted as the adversarial class."""
  out: dict[str, Any] = {}

  def stamp(x: np.ndarray) -> np.ndarray:
    patch = a.trigger.shape[0]
    if a.extra.get("trigger_position") == "fixed":
      corner = supervised_triggers.fixed_position(x.shape[1], patch)
      positions = np.tile(np.asarray([corner], np.int64), (len(x), 1))
    else:
      positions = supervised_triggers.random_positions(len(x), x.shape[1:3], patch,
                                                       seed=int(a.extra.get("test_seed", 0)))
    return supervised_triggers.stamp_trigger(x, a.trigger, positions)

  if len(a.target_ids):
    x = test.x[a.target_ids]
    pred = predict(stamp(x) if a.attack in artifact_lib.BACKDOORS else x)
    out.update(targeted_asr=float(np.mean(pred == a.adversarial_class)),
               target_predictions=pred.tolist(), target_ids=a.target_ids.tolist())
  if a.attack in artifact_lib.BACKDOORS:
    rows = np.flatnonzero(test.y == int(a.extra["source_class"]))
    rows = np.setdiff1d(rows, a.target_ids)
    out.update(backdoor_asr=float(np.mean(predict(stamp(test.x[rows])) == a.adversarial_class)),
               backdoor_test_images=int(len(rows)))
  return out


@TRAINERS.register("poison_victim")
def train_victim(config, run_dir: str) -> dict[str, Any]:
  """The victim stage (see the module docstring)."""
  return Driver(config, run_dir).run(VictimTask())


train_victim.task = VictimTask  # runner.validate_chain validates with it
