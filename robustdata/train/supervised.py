"""The supervised classification trainer: a data policy plus a compiled step, as a `Task` of the
one loop driver (`train/driver.py`). Registered as trainer 'supervised'.

Sections, top to bottom: setup (data, model, objective, gradient rule, optimizer, policy,
shardings, compiled functions), the epoch (gradient-rule choice, policy batches, step, hooks),
evaluation and model selection, results.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import numpy as np

from robustdata import config_lib, validation
from robustdata.data import augment as augment_lib
from robustdata.data import sources
from robustdata.data.loader import BatchLoader
from robustdata.data.policies import PolicyContext
from robustdata.evals import groups as group_evals
from robustdata.models.conv import with_conv
from robustdata.privacy import masks as masks_lib
from robustdata.registry import (GRAD_RULES, MODELS, OBJECTIVES, POLICIES, TRAINERS,
                                 ConfigError)
from robustdata.spurious import group_source
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import grad_rules
from robustdata.train import optim as optim_lib
from robustdata.train import sharding as sharding_lib
from robustdata.train import step as step_lib
from robustdata.train.driver import Driver, Loop, Task, abstract_on
from robustdata.train.evaluate import Evaluator, evaluate_split
from robustdata.train.state import create_train_state

@dataclasses.dataclass
class RunContext:
  """What a post-training `finalize(run_ctx) -> dict` of a policy or objective may use; the
  dict it returns is merged into results.json."""

  config: Any
  data: Any  # DataSplits
  state: Any  # the final TrainState
  run_dir: str
  evaluator: Evaluator
  train_group_counts: Optional[np.ndarray]

  def logits_and_features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    return self.evaluator.logits_and_features(self.state, self.data.splits()[split])


class SupervisedTask(Task):
  """Classification with a data policy, an objective, a gradient rule and an optax optimizer."""

  def validate(self, config, *, num_devices: int) -> None:
    config_lib.validate(config, num_devices=num_devices)  # eval.select_by: validation.SELECT_BY
    augment_lib.validate(config.data.augment)

  # --- Setup. ------------------------------------------------------------------------------------

  def setup(self, driver: Driver) -> None:
    config, mesh = driver.config, driver.mesh
    self.driver, self.config = driver, config
    self.data = data = self.load_data(config)
    validation.check_data(config, data)
    self.train_group_counts = None
    if data.train.groups is not None and data.num_groups:
      self.train_group_counts = np.bincount(data.train.groups, minlength=data.num_groups)
    # Training reads the train groups of config.group_stage (inferred) if it is set; evaluation
    # keeps the annotated splits in self.data.
    data = group_source.training_view(config, data, driver.run_dir)

    self.model = with_conv(MODELS.get(config.model.name)(config.model, data.num_classes),
                           config)
    self.objective = OBJECTIVES.get(config.method)(config, num_groups=data.num_groups,
                                                   num_classes=data.num_classes)
    self.objective.prepare(data.train)
    self.tx = optim_lib.make_optimizer(config.optim)
    self.policy = POLICIES.get(config.policy.name)(
        config, data.train, batch_size=config.train.batch_size, seed=config.seed,
        num_classes=data.num_classes, num_groups=data.num_groups)
    steps = config.train.epochs * self.policy.expected_steps_per_epoch()
    self.grad_plan = grad_rules.as_plan(GRAD_RULES.get(config.privacy.mode)(
        config.privacy, expected_batch_size=config.train.batch_size,
        dataset_size=len(data.train), steps=steps, epochs=config.train.epochs))
    self.lr_at = optim_lib.lr_schedule(config.optim, epochs=config.train.epochs)

    self.rng = jax.random.PRNGKey(config.seed)
    self._init = functools.partial(create_train_state, self.model, self.tx,
                                   input_shape=data.input_shape,
                                   method_state=self.objective.init())
    self.abstract = jax.eval_shape(lambda k: self._init(rng=k), self.rng)
    self.repl = sharding_lib.replicated(mesh)
    self.state_sharding = jax.tree.map(lambda _: self.repl, self.abstract)
    self.batch_sharding = sharding_lib.batch_sharding(mesh)
    self.grad_plan.setup(self.abstract.params, self.abstract.model_state, config=config)
    self.mask_plan = masks_lib.from_config(config)  # config.mask: a fixed parameter mask
    if self.mask_plan is not None:
      self.mask_plan.setup(self.abstract.params)

    self.loss_fn = step_lib.make_loss_fn(self.model,
                                         label_smoothing=config.optim.label_smoothing)
    self.evaluator = Evaluator(self.model, mesh, batch_size=config.train.eval_batch_size)
    # A policy with variable batches (Poisson sampling) pads them to its static physical size.
    physical = int(getattr(self.policy, "physical_batch_size", config.train.batch_size))
    physical = -(-physical // mesh.size) * mesh.size
    self.loader = BatchLoader(data.train, batch_size=physical, sharding=self.batch_sharding,
                              with_groups=True, resident=not self.policy.rewrites_train)
    self.best: Optional[dict[str, Any]] = None
    self.lr = 0.0
    self._rule_key, self._train_step, self._host_operands = object(), None, None
    self._operands, self._project = None, None

  def load_data(self, config):
    """The run's DataSplits (a subclass may transform them, e.g. poison the train split)."""
    return sources.load(config.data)

  def input_transform(self):
    """`(key, batch) -> x` applied to train batches inside the step, or None."""
    return None

  def abstract_state(self) -> Any:
    return abstract_on(self.abstract, self.state_sharding)

  def fresh_state(self, key) -> Any:
    return jax.jit(lambda k: self._init(rng=k), out_shardings=self.state_sharding)(key)

  def init_state(self) -> Any:
    return self.fresh_state(self.rng)

  def host_state(self) -> dict[str, Any]:
    out = {"best": self.best, "lr": self.lr, "policy": self.policy.state_dict(),
           "grad_rule": self.grad_plan.state_dict()}
    if self.mask_plan is not None:
      out["mask"] = self.mask_plan.state_dict()
    return out

  def load_host_state(self, saved: dict[str, Any]) -> None:
    self.best, self.lr = saved.get("best"), saved.get("lr", 0.0)
    self.policy.load_state_dict(saved["policy"])
    self.grad_plan.load_state_dict(saved.get("grad_rule", {}))
    if self.mask_plan is not None:
      self.mask_plan.load_state_dict(saved.get("mask", {}))

  def expected_steps(self) -> int:
    return self.config.train.epochs * self.policy.expected_steps_per_epoch()

  def close(self) -> None:
    if hasattr(self, "policy") and hasattr(self.policy, "close"):
      self.policy.close()

  # --- The epoch. --------------------------------------------------------------------------------

  def context(self, loop: Loop, metrics=None) -> PolicyContext:
    return PolicyContext(step=loop.step, epoch=loop.epoch, state=self.state, metrics=metrics,
                         probe=lambda name, idx: self.evaluator.probe(name, self.state,
                                                                      self.data.train, idx),
                         loss_fn=self.loss_fn, lr=self.lr)

  def _compile_step(self, choice: grad_rules.RuleChoice):
    """The jitted step for a gradient-rule choice (once per distinct choice key)."""
    config = self.config
    objective = self.objective  # its wrap_* hooks (ELR, mixup) change the loss and the step
    step_fn = step_lib.make_train_step(objective.wrap_loss(self.loss_fn), objective=objective,
                                       grad_rule=objective.wrap_rule(choice.rule), tx=self.tx,
                                       augment=tuple(config.data.augment),
                                       crop_padding=config.data.crop_padding,
                                       project=choice.project,
                                       input_transform=self.input_transform())
    step_fn = objective.wrap_step(step_fn)
    repl = self.repl
    return jax.jit(step_fn, in_shardings=(self.state_sharding, self.batch_sharding, repl, repl),
                   out_shardings=(self.state_sharding, repl), donate_argnums=(0,))

  def _projected(self, params):
    """params under the rule's projection (e.g. the pruning mask in force), if it has one."""
    if self._project is None:
      return params
    args = (params,) if self._operands is None else (params, self._operands)
    return jax.jit(self._project)(*args)

  def rule_choice(self, epoch: int) -> grad_rules.RuleChoice:
    """The gradient rule of `epoch` with config.mask in force (a subclass may add to its
    projection)."""
    choice = self.grad_plan.choose(epoch, self.state.params)
    if self.mask_plan is None:
      return choice
    return self.mask_plan.combine(epoch, self.state.params, choice)

  def _choose_rule(self, epoch: int) -> None:
    """Re-jits the step when the plan's rule key for this epoch changes (a mode switch, the
    first mask); new operands (a recomputed mask: the plan hands out a new object) are step
    arguments and reuse the compiled step. The projection runs whenever either changes."""
    choice = self.rule_choice(epoch)
    if choice.key != self._rule_key:
      self._rule_key, self._train_step = choice.key, self._compile_step(choice)
    elif choice.operands is self._host_operands:
      return
    self._host_operands, self._project = choice.operands, choice.project
    self._operands = None if choice.operands is None else jax.device_put(choice.operands,
                                                                         self.repl)
    self.state = self.state.replace(params=self._projected(self.state.params))

  def start_epoch(self, loop: Loop) -> int:
    self._choose_rule(loop.epoch)
    self._steps = self.policy.steps_for(self.context(loop))
    return self._steps

  def train_step(self, loop: Loop, i: int) -> tuple[dict[str, Any], int]:
    indices, weights = self.policy.next_batch(self.context(loop))
    batch = self.device_batch(indices, weights)
    self.lr = self.lr_at(loop.epoch + i / self._steps)
    self.state, metrics = self._train_step(self.state, batch, np.float32(self.lr),
                                           self._operands)
    return metrics, len(indices)

  def device_batch(self, indices: np.ndarray, weights: np.ndarray):
    """The sharded train batch of `indices` (a subclass may add per-example arrays)."""
    return self.loader.device_batch(indices, weights)

  def after_step(self, loop: Loop, logged) -> None:
    self.policy.on_step(self.context(loop, logged))

  def end_epoch(self, loop: Loop) -> None:
    self.policy.on_epoch_end(self.context(loop))
    if self.policy.wants_reinit():  # a fresh model, keeping the step counter and the RNG stream
      fresh = self.fresh_state(jax.random.fold_in(self.rng, loop.epoch + 1))
      self.state = fresh.replace(step=self.state.step, rng=self.state.rng)
      self.state = self.state.replace(params=self._projected(self.state.params))
      self.best = None  # model selection restarts with the new model

  def after_epoch(self, loop: Loop, *, eval_due: bool) -> None:
    writer = self.driver.writer
    rule_metrics = self.grad_plan.epoch_metrics(epoch=loop.epoch, steps=loop.step)
    if rule_metrics:  # e.g. epsilon spent so far, effective dimension
      writer.write(loop.step, "privacy", rule_metrics, epoch=loop.epoch)
    if eval_due:
      self._eval_epoch(loop)

  # --- Evaluation and model selection. -----------------------------------------------------------

  def evaluate(self, split: str) -> dict[str, Any]:
    return evaluate_split(self.evaluator, self.state, self.data.splits()[split],
                          splits=self.data, train_group_counts=self.train_group_counts)

  def _eval_epoch(self, loop: Loop) -> None:
    """Validation metrics every eval epoch; keeps the best epoch's val/test when selecting."""
    writer, progress = self.driver.writer, self.driver.progress
    select_by = self.config.eval.select_by
    val = self.evaluate("val")
    if val:
      writer.write(loop.step, "val", _scalars(val), epoch=loop.epoch)
      progress.message(f"epoch {loop.epoch}: val accuracy {val.get('accuracy', float('nan')):.4f}"
                       + (f", worst-group {val['worst_group_accuracy']:.4f}"
                          if "worst_group_accuracy" in val else ""))
    if "label_flipped" in self.data.train.extras:  # memorisation of the noisy labels over time
      writer.write(loop.step, "train_eval", _scalars(self.evaluate("train")), epoch=loop.epoch)
    if not select_by:
      return
    key = select_by.removeprefix("val_")
    if not isinstance(val.get(key), (int, float)):
      here = sorted(k for k in validation.SELECT_BY if k.removeprefix("val_") in val)
      raise ConfigError(f"config.eval.select_by={select_by!r} is not a validation metric of this "
                        f"run; allowed values here: {here}")
    sign = 1.0 if validation.SELECT_BY[select_by] == "max" else -1.0
    if self.best is None or sign * (val[key] - self.best["score"]) > 0:
      test = self.evaluate("test")
      writer.write(loop.step, "test", _scalars(test), epoch=loop.epoch)
      self.best = {"score": val[key], "epoch": loop.epoch, "metrics": {"val": val, "test": test}}

  # --- Results. ----------------------------------------------------------------------------------

  def results(self, loop: Loop, wall_time_s: float) -> dict[str, Any]:
    config, data = self.config, self.data
    final = {"val": self.evaluate("val"), "test": self.evaluate("test")}
    selected = config.eval.select_by and self.best
    chosen = self.best["metrics"] if selected else final
    results = _results(config, chosen, self.policy)
    results.update(self.grad_plan.results(epoch=loop.epoch, steps=loop.step))
    if self.mask_plan is not None:
      results.update(self.mask_plan.results())
    if selected:
      results["selected_epoch"] = self.best["epoch"]
    if "label_flipped" in data.train.extras:  # the final model on the noisy train split
      train = self.evaluate("train")
      results.update({f"train_{k}": v for k, v in _scalars(train).items()
                      if k != "per_class_accuracy"})
    run_ctx = RunContext(config=config, data=data, state=self.state, run_dir=self.driver.run_dir,
                         evaluator=self.evaluator, train_group_counts=self.train_group_counts)
    for component in (self.policy, self.objective):  # post-training (DFR's last-layer refit)
      if hasattr(component, "finalize"):
        results.update(component.finalize(run_ctx))
    if "group_accuracy" in results and sharding_lib.is_primary():  # process 0 writes files
      names = list(data.group_names) or [str(g) for g in range(data.num_groups)]
      per_group = np.array([results["group_accuracy"].get(n, np.nan) for n in names])
      group_evals.plot_group_accuracy(per_group, f"{self.driver.run_dir}/group_accuracy.png",
                                      group_names=names)
    return results


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or k.endswith("accuracy")}


def _results(config, chosen, policy) -> dict[str, Any]:
  """The supervised keys of the flat results.json (design.md; the driver adds the header)."""
  val, test = chosen["val"], chosen["test"]
  out: dict[str, Any] = {"policy": config.policy.name, "model": config.model.name,
                         "examples_probed": policy.examples_probed}
  if test:
    out["test_accuracy"] = test["accuracy"]
    out["test_loss"] = test["loss"]
    out["per_class_accuracy"] = test["per_class_accuracy"]
    for key in ("worst_group_accuracy", "worst_group", "average_accuracy", "group_accuracy",
                "spurious_accuracy"):
      if key in test:
        out[key] = test[key]
  if val:
    out["val_accuracy"] = val["accuracy"]
    if "worst_group_accuracy" in val:
      out["val_worst_group_accuracy"] = val["worst_group_accuracy"]
  out.update(policy.results())
  return out


def restore_model(config, run_dir: str, data) -> tuple[Any, dict[str, Any]]:
  """(model, eval variables {'params', **model_state}) of the final checkpoint of the finished
  supervised run of `config` in `run_dir` (an upstream stage, e.g. a poisoning substitute)."""
  model = with_conv(MODELS.get(config.model.name)(config.model, data.num_classes), config)
  objective = OBJECTIVES.get(config.method)(config, num_groups=data.num_groups,
                                            num_classes=data.num_classes)
  objective.prepare(data.train)
  init = functools.partial(create_train_state, model, optim_lib.make_optimizer(config.optim),
                           input_shape=data.input_shape, method_state=objective.init())
  repl = sharding_lib.replicated(sharding_lib.make_mesh())
  abstract = jax.eval_shape(lambda k: init(rng=k), jax.random.PRNGKey(0))
  state = checkpoint_lib.restore_finished(
      f"{run_dir}/checkpoints", abstract_on(abstract, jax.tree.map(lambda _: repl, abstract)),
      missing=f"the upstream run {run_dir} has no checkpoint; run it first",
      identity={"config_hash": config_lib.config_hash(config), "seed": int(config.seed)})
  return model, {"params": state.params, **state.model_state}


@TRAINERS.register("supervised")
def train_and_evaluate(config, run_dir: str) -> dict[str, Any]:
  """Trains per a resolved `config` (`config_lib.resolve`), writing metrics, checkpoints and
  results.json into `run_dir`; rerunning on the same `run_dir` resumes from the latest
  checkpoint (optimizer state, data order, RNG stream and policy state included) and ends with
  the same results."""
  return Driver(config, run_dir).run(SupervisedTask())


train_and_evaluate.task = SupervisedTask  # runner.validate_chain validates with it
