"""The crafting stage of a clean-label poisoning experiment, registered as trainer
'poison_craft': poisons crafted against the final model of the upstream substitute stage
(`config.substitute`, a whole supervised config) and written into this run's directory as a
`PoisonArtifact` that the victim stage (`victim.py`) reads.

It is a `Task` of the one loop driver: each epoch is one restart of the attack (gradient
matching and Sleeper Agent: `config.attack.restarts`; Bullseye Polytope and Hidden Trigger
Backdoor: one), one step each, checkpointed after every restart with the best perturbations so
far, so a killed crafting run resumes at its restart and ends with the same poisons.

`config.attack` (ATTACK_DEFAULTS): which attack, its eps (l_inf, pixel units), budget (a
fraction of the train split), the adversarial class, the target (test index) or, for Sleeper
Agent, the source class, the trigger, and the optimiser settings of the reference code.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustdata import config_lib
from robustdata import run_dir as run_dir_lib
from robustdata import runner
from robustdata.data import sources
from robustdata.poisoning import artifact as artifact_lib
from robustdata.poisoning import bullseye
from robustdata.poisoning import gradient_matching as gm
from robustdata.poisoning import hidden_trigger
from robustdata.poisoning import sleeper_agent
from robustdata.poisoning import supervised_triggers
from robustdata.registry import TRAINERS, ConfigError, check_known_fields, field_reader
from robustdata.train import sharding as sharding_lib
from robustdata.train.driver import Driver, Loop, Task, abstract_on
from robustdata.train.supervised import SupervisedTask, restore_model

# config.attack: every field with its default (None: the attack's reference value).
ATTACK_DEFAULTS: dict[str, Any] = {
    "name": "gradient_matching",  # gradient_matching, bullseye, sleeper_agent, hidden_trigger
    "eps": 16 / 255,          # l_inf bound of the perturbations in pixel units
    "budget": 0.01,           # poisons as a fraction of the train split (from the base class)
    "adversarial_class": 0,   # the base class the poisons come from; the class targets move to
    "target_index": 0,        # test-split index of the target (not Sleeper Agent)
    "source_class": artifact_lib.SOURCE_CLASS_DEFAULT,  # Sleeper Agent only: the class whose
                              # triggered images move (HTB: its target's class)
    "trigger": "checkerboard",  # backdoors: random or checkerboard patch
    "patch_size": 4,          # backdoors: trigger side in pixels
    "iterations": 0,          # 0: the attack's reference count (250 / 1200 / 5000)
    "restarts": 1,            # gradient matching / Sleeper Agent restarts (reference 8 / 1)
    "lr": 0.0,                # 0: the reference step size
    "pbatch": 512,            # gradient matching: poisons per batch of the objective
    "augment": True,          # gradient matching: differentiable augmentation
    "retrain_every": 0,       # gradient matching, Sleeper Agent: retrain the substitute from
                              # scratch on the current poisons every R iterations (0: never)
    "seed": 0,                # choice of the bases, restarts, trigger
}
REFERENCE_ITERATIONS = {"gradient_matching": 250, "sleeper_agent": 250, "bullseye": 1200,
                        "hidden_trigger": 5000}
# The attacks crafted by gradient matching (gm.craft): restarts and retraining apply to them.
GRADIENT_MATCHING = ("gradient_matching", "sleeper_agent")
REFERENCE_LR = {"bullseye": 0.04, "hidden_trigger": 0.001}  # gradient matching: gm.reference_lr


ENSEMBLE_PREFIX = "substitute_"  # config.substitute_1, substitute_2, ...: more substitutes


def ensemble_sections(config) -> list[str]:
  """The sections of the extra substitutes of a crafting config (`substitute_<k>`, k = 1, 2,
  ...: whole configs of supervised stages, each its own run), in order; Bullseye Polytope
  crafts against `substitute` and all of them (the official attack's ensemble)."""
  extra = [k for k in config_lib.stage_sections(config) if k.startswith(ENSEMBLE_PREFIX)]
  return sorted(extra, key=lambda k: int(k[len(ENSEMBLE_PREFIX):])
                if k[len(ENSEMBLE_PREFIX):].isdigit() else -1)


class CraftTask(Task):
  """Crafts the poisons of `config.attack` against the substitute's final model."""

  loss_name = "crafting objective"
  nan_hint = "Lower config.attack.lr."

  def validate(self, config, *, num_devices: int) -> None:
    if "substitute" not in config or config.substitute.get("trainer") != "supervised":
      raise ConfigError("config.substitute must be the config of a supervised run (the "
                        "substitute model the poisons are crafted against)")
    if "attack" not in config:
      raise ConfigError("config.attack is missing; build it from "
                        "robustdata.poisoning.craft.ATTACK_DEFAULTS")
    check_known_fields(config.attack, ATTACK_DEFAULTS, "config.attack")
    get = field_reader(config.attack, ATTACK_DEFAULTS)
    for field in ("iterations", "restarts", "pbatch", "retrain_every", "patch_size", "seed"):
      value = get(field)
      lowest = 1 if field in ("restarts", "pbatch", "patch_size") else 0
      if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise ConfigError(f"config.attack.{field}={value!r} must be an int >= {lowest}")
    if get("retrain_every") and get("name") not in GRADIENT_MATCHING:
      raise ConfigError(f"config.attack.retrain_every={get('retrain_every')} applies to "
                        f"{sorted(GRADIENT_MATCHING)}, not to {get('name')!r}; allowed there: 0")
    if not isinstance(get("lr"), (int, float)) or get("lr") < 0:
      raise ConfigError(f"config.attack.lr={get('lr')!r} must be >= 0 (0: the reference value)")
    if config.data != config.substitute.data:
      raise ConfigError("config.data must equal config.substitute.data (poisons are crafted for "
                        "the substitute's train split)")
    for section in ensemble_sections(config):
      index = section[len(ENSEMBLE_PREFIX):]
      if not index.isdigit() or int(index) < 1:
        raise ConfigError(f"config.{section}: extra substitutes are named "
                          f"{ENSEMBLE_PREFIX}1, {ENSEMBLE_PREFIX}2, ...")
      if get("name") != "bullseye":
        raise ConfigError(f"config.{section}: an ensemble of substitutes applies to "
                          f"config.attack.name='bullseye' only, not to {get('name')!r}")
      if config[section].get("trainer") != "supervised":
        raise ConfigError(f"config.{section} must be the config of a supervised run")
      if config[section].data != config.data:
        raise ConfigError(f"config.{section}.data must equal config.data (every substitute "
                          "trains on the split the poisons are crafted for)")
    config_lib.validate(config, num_devices=num_devices)
    self.data = sources.load(config.data)  # setup reuses it
    _poison_count(config.attack, self.data)

  def setup(self, driver: Driver) -> None:
    config = self.config = driver.config
    self.driver = driver
    self.get = get = field_reader(config.attack, ATTACK_DEFAULTS)
    data = self.data  # loaded by validate, which the driver runs first
    train, test = data.train, data.test
    self.count = _poison_count(config.attack, data)
    self.name, self.adv = get("name"), int(get("adversarial_class"))
    self.iterations = get("iterations") or REFERENCE_ITERATIONS[self.name]
    self.sub_dir = runner.stage_dir(config, "substitute", driver.run_dir)
    self.model, self.variables = restore_model(config.substitute, self.sub_dir, data)
    self.logits_fn, self.features_fn = gm.model_fns(self.model)
    self.ensemble = [(self.variables, self.features_fn)]  # Bullseye's substitutes
    self.ensemble_dirs = []
    for section in ensemble_sections(config):
      self.ensemble_dirs.append(runner.stage_dir(config, section, driver.run_dir))
      model, variables = restore_model(config[section], self.ensemble_dirs[-1], data)
      self.ensemble.append((variables, gm.model_fns(model)[1]))
    self.key = jax.random.PRNGKey(get("seed"))
    rng = np.random.default_rng(np.random.SeedSequence([get("seed"), 0xC4AF7]))

    base_pool = np.flatnonzero(train.y == self.adv)
    self.trigger, self.source = None, None
    if self.name == "sleeper_agent":  # the base class images with the largest gradient norm
      self.source = int(get("source_class"))
      picks = sleeper_agent.select_poisons(self.logits_fn, self.variables, train.x[base_pool],
                                           train.y[base_pool], self.count)
      self.base = np.sort(base_pool[picks])
    else:
      self.base = np.sort(rng.choice(base_pool, size=self.count, replace=False))
      self.target = int(get("target_index"))
      self.source = int(test.y[self.target])
    if self.name in artifact_lib.BACKDOORS:
      self.trigger = supervised_triggers.make_trigger(get("trigger"), get("patch_size"),
                                                      train.x.shape[-1], seed=get("seed"))
    self.x_base = train.x[self.base]
    self.abstract = {"delta": jax.ShapeDtypeStruct(self.x_base.shape, jnp.float32),
                     "loss": jax.ShapeDtypeStruct((), jnp.float32)}
    self.repl = sharding_lib.replicated(driver.mesh)
    self.restart_losses: list[float] = []
    self.craft_time_s = 0.0

  def epochs(self) -> int:
    return int(self.get("restarts")) if self.name in GRADIENT_MATCHING else 1

  def abstract_state(self) -> Any:
    return abstract_on(self.abstract, jax.tree.map(lambda _: self.repl, self.abstract))

  def init_state(self) -> Any:
    return jax.device_put({"delta": jnp.zeros(self.x_base.shape, jnp.float32),
                           "loss": jnp.asarray(np.inf, jnp.float32)}, self.repl)

  def host_state(self) -> dict[str, Any]:
    return {"restart_losses": self.restart_losses, "craft_time_s": self.craft_time_s}

  def load_host_state(self, saved: dict[str, Any]) -> None:
    self.restart_losses = list(saved.get("restart_losses", []))
    self.craft_time_s = float(saved.get("craft_time_s", 0.0))

  def expected_steps(self) -> int:
    return self.epochs()

  def start_epoch(self, loop: Loop) -> int:
    return 1

  # --- One restart. ------------------------------------------------------------------------------

  def train_step(self, loop: Loop, i: int) -> tuple[dict[str, Any], int]:
    del i
    t0 = time.perf_counter()
    delta, loss = self.craft(jax.random.fold_in(self.key, loop.epoch), loop.epoch)
    self.craft_time_s += time.perf_counter() - t0
    self.restart_losses.append(float(loss))
    if loss < float(self.state["loss"]):
      self.state = jax.device_put({"delta": jnp.asarray(delta, jnp.float32),
                                   "loss": jnp.asarray(loss, jnp.float32)}, self.repl)
    return {"loss": jnp.asarray(loss, jnp.float32)}, self.count

  def craft(self, key, restart: int) -> tuple[np.ndarray, float]:
    """(perturbations, final objective) of one restart of the attack."""
    get, data, v = self.get, self.data, self.variables
    eps, lr = float(get("eps")), float(get("lr")) or None
    if self.name == "gradient_matching":
      x_t, y_t = data.test.x[self.target][None], np.full(1, self.adv, np.int32)

      def gradient(variables):  # the target's adversarial gradient (again after a retraining)
        return gm.target_gradient(self.logits_fn, variables, x_t, y_t)

      res = gm.craft(self.logits_fn, v, gradient(v), self.x_base,
                     np.full(self.count, self.adv, np.int32), key=key, eps=eps,
                     iterations=self.iterations, lr=lr, pbatch=get("pbatch"), restarts=1,
                     augment=bool(get("augment")), mesh=self.driver.mesh,
                     retrain=self.retrain if get("retrain_every") else None,
                     gradient=gradient, retrain_every=get("retrain_every"))
      return res.delta, res.loss
    if self.name == "sleeper_agent":
      sources_x = data.train.x[data.train.y == self.source]
      stamped = sleeper_agent.stamp_random(sources_x, self.trigger, seed=get("seed") + restart)
      res = sleeper_agent.craft_sleeper_agent(
          self.logits_fn, v, self.x_base, stamped, target_class=self.adv, key=key, eps=eps,
          iterations=self.iterations, lr=lr, pbatch=get("pbatch"), restarts=1,
          augment=bool(get("augment")), mesh=self.driver.mesh,
          retrain=self.retrain if get("retrain_every") else None,
          retrain_every=get("retrain_every"))
      return res.delta, res.loss
    lr = lr or REFERENCE_LR[self.name]
    if self.name == "bullseye":
      x_t = data.test.x[self.target]
      delta, losses = bullseye.craft_bullseye(self.ensemble, self.x_base, x_t, eps=eps, lr=lr,
                                              iterations=self.iterations, mesh=self.driver.mesh)
      final = bullseye.bullseye_objective(
          self.ensemble, jnp.asarray(self.x_base + delta),
          [fn(variables, jnp.asarray(x_t[None])) for variables, fn in self.ensemble])
      return delta, float(final)
    patched = hidden_trigger.paste_trigger(data.train.x[data.train.y == self.source],
                                           self.trigger)
    delta, losses = hidden_trigger.craft_hidden_trigger(v, self.features_fn, self.x_base, patched,
                                                        eps=eps, lr=lr,
                                                        iterations=self.iterations,
                                                        mesh=self.driver.mesh)
    return delta, float(losses[-1])

  def retrain(self, key, delta: np.ndarray):
    """The retraining of Sleeper Agent (and of gradient matching with retrain_every): the
    substitute's config trained from scratch (another seed) on the train split with the current
    poisons, as a run of its own under this run's directory; returns its final eval
    variables."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    sub = config_lib.from_dict(config_lib.to_dict(self.config.substitute))
    with sub.unlocked():
      sub.seed = seed
      sub.train.progress = "none"
    sub = config_lib.resolve(sub)
    task = _PoisonedTrainTask(self.base, delta)
    Driver(sub, os.path.join(self.driver.run_dir, "retrain", f"seed{seed}")).run(task)
    return {"params": task.state.params, **task.state.model_state}

  # --- Results: the artifact. --------------------------------------------------------------------

  def results(self, loop: Loop, wall_time_s: float) -> dict[str, Any]:
    state = jax.device_get(self.state)
    data, get = self.data, self.get
    extra = {"source_class": self.source, "test_seed": int(get("seed")),
             "trigger_position": "fixed" if self.name == "hidden_trigger" else "random",
             "iterations": self.iterations}
    if self.ensemble_dirs:
      extra["ensemble_run_ids"] = [os.path.basename(d) for d in self.ensemble_dirs]
    art = artifact_lib.PoisonArtifact(
        attack=self.name, base_indices=self.base, perturbations=np.asarray(state["delta"]),
        target_ids=np.asarray([] if self.name == "sleeper_agent" else [self.target]),
        adversarial_class=self.adv, eps=float(get("eps")), budget=float(get("budget")),
        substitute_run_id=os.path.basename(self.sub_dir),
        data_fingerprint=artifact_lib.dataset_fingerprint(data.train.x, data.train.y),
        trigger=self.trigger, extra=extra)
    run_dir_lib.on_primary(lambda: art.save(self.driver.run_dir), what="write the poisons")
    return {"method": "poison_craft", "attack": self.name, "craft_time_s": self.craft_time_s,
            "poison_count": self.count, "poison_budget": float(get("budget")),
            "poison_eps": float(get("eps")), "craft_objective": float(state["loss"]),
            "restart_objectives": self.restart_losses, "substitute_run_id": art.substitute_run_id,
            "max_abs_perturbation": float(np.max(np.abs(state["delta"]))),
            "substitutes": 1 + len(self.ensemble_dirs)}


def _poison_count(attack, data) -> int:
  """Checks config.attack against the data (artifact.validate_attack); the number of poisons."""
  return artifact_lib.validate_attack(
      attack, num_train_per_class=np.bincount(data.train.y, minlength=data.num_classes),
      num_test=len(data.test), num_classes=data.num_classes, test_labels=data.test.y)


class _PoisonedTrainTask(SupervisedTask):
  """A supervised run on the train split with perturbations added at `base` (Sleeper Agent's
  substitute retraining)."""

  def __init__(self, base: np.ndarray, delta: np.ndarray):
    self.base, self.delta = base, np.asarray(delta, np.float32)

  def load_data(self, config):
    data = sources.load(config.data)
    x = np.array(data.train.x, np.float32, copy=True)
    x[self.base] = np.clip(x[self.base] + self.delta, 0.0, 1.0)
    return dataclasses.replace(data, train=data.train.replace(x=x))


@TRAINERS.register("poison_craft")
def train_craft(config, run_dir: str) -> dict[str, Any]:
  """The crafting stage (see the module docstring)."""
  return Driver(config, run_dir).run(CraftTask())


train_craft.task = CraftTask  # runner.validate_chain validates with it
