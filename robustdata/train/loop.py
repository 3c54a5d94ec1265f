"""`train_and_evaluate(config, run_dir)`: the one training loop every method runs through.

Read top to bottom in fixed sections: setup and validation, data, model and optimizer, state
and shardings, compiled functions, restore, loop (policy -> loader -> step -> hooks ->
logging -> checkpoints -> evals), results.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import time
from typing import Any, Optional

import jax
import numpy as np

from robustdata import config_lib
from robustdata.data import augment as augment_lib
from robustdata.data import sources
from robustdata.evals import groups as group_evals
from robustdata.registry import (GRAD_RULES, MODELS, OBJECTIVES, POLICIES, TRAINERS,
                                 ConfigError)
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import grad_rules
from robustdata.train import metrics as metrics_lib
from robustdata.train import optim as optim_lib
from robustdata.train import run_dir as run_dir_lib
from robustdata.train import sharding as sharding_lib
from robustdata.train import step as step_lib
from robustdata.train.evaluate import Evaluator, evaluate_split
from robustdata.train.loader import BatchLoader
from robustdata.train.policies import PolicyContext, to_json
from robustdata.train.state import create_train_state


@dataclasses.dataclass
class RunContext:
  """What a post-training `finalize(run_ctx) -> dict` of a policy or objective may use; the
  dict it returns is merged into results.json."""

  config: Any
  data: Any  # DataSplits
  state: Any  # the final TrainState
  run_dir: str
  evaluator: "Evaluator"
  train_group_counts: Optional[np.ndarray]

  def logits_and_features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    return self.evaluator.logits_and_features(self.state, self.data.splits()[split])


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf loss; the last good checkpoint is kept."""


def _build(config, data):
  """Model, objective and optimizer from the config."""
  model = MODELS.get(config.model.name)(config.model, data.num_classes)
  objective = OBJECTIVES.get(config.method)(config, num_groups=data.num_groups,
                                            num_classes=data.num_classes)
  tx = optim_lib.make_optimizer(config.optim)
  return model, objective, tx


def _build_grad_plan(config, data, policy) -> grad_rules.RulePlan:
  """The gradient rule (plan) of `config.privacy`, told the run's planned number of steps
  (noise calibration to a target epsilon) and epochs (pruning schedules)."""
  steps = config.train.epochs * policy.expected_steps_per_epoch()
  return grad_rules.as_plan(GRAD_RULES.get(config.privacy.mode)(
      config.privacy, expected_batch_size=config.train.batch_size, dataset_size=len(data.train),
      steps=steps, epochs=config.train.epochs))


@TRAINERS.register("supervised")
def train_and_evaluate(config, run_dir: str) -> dict[str, Any]:
  """Trains per `config`, writing metrics, checkpoints and results.json into `run_dir`.

  Rerunning on the same `run_dir` resumes from the latest checkpoint (optimizer state, data
  order, RNG stream and policy state included) and ends with the same results.
  """
  config = config_lib.with_defaults(config)  # what runner.run hashes, also when called directly
  # --- Setup and validation (before anything compiles). ----------------------------------------
  sharding_lib.maybe_initialize_distributed(config.train.distributed)
  mesh = sharding_lib.make_mesh()
  config_lib.validate(config, num_devices=mesh.size)
  augment_lib.validate(config.data.augment)
  os.makedirs(run_dir, exist_ok=True)

  # --- Data. -------------------------------------------------------------------------------------
  data = sources.load(config.data)
  train_group_counts = None
  if data.train.groups is not None and data.num_groups:
    train_group_counts = np.bincount(data.train.groups, minlength=data.num_groups)

  # --- Model, objective, gradient rule, optimizer, policy. ----------------------------------------
  model, objective, tx = _build(config, data)
  policy = POLICIES.get(config.policy.name)(
      config, data.train, batch_size=config.train.batch_size, seed=config.seed,
      num_classes=data.num_classes, num_groups=data.num_groups)
  grad_plan = _build_grad_plan(config, data, policy)
  lr_at = optim_lib.lr_schedule(config.optim, epochs=config.train.epochs)

  # --- State and shardings. ----------------------------------------------------------------------
  rng = jax.random.PRNGKey(config.seed)
  init = functools.partial(create_train_state, model, tx, input_shape=data.input_shape,
                           method_state=objective.init())
  abstract = jax.eval_shape(lambda k: init(rng=k), rng)
  repl = sharding_lib.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: repl, abstract)
  batch_sharding = sharding_lib.batch_sharding(mesh)
  grad_plan.setup(abstract.params, abstract.model_state, config=config)  # DP: no BatchNorm

  # --- Compiled functions. -----------------------------------------------------------------------
  loss_fn = step_lib.make_loss_fn(model, label_smoothing=config.optim.label_smoothing)

  def compile_step(choice: grad_rules.RuleChoice):
    """The jitted step for a gradient-rule choice (once per distinct choice key)."""
    step_fn = step_lib.make_train_step(loss_fn, objective=objective, grad_rule=choice.rule,
                                       tx=tx, augment=tuple(config.data.augment),
                                       crop_padding=config.data.crop_padding,
                                       project=choice.project)
    return jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding, repl, repl),
                   out_shardings=(state_sharding, repl), donate_argnums=(0,))

  evaluator = Evaluator(model, mesh, batch_size=config.train.eval_batch_size)
  # A policy with variable batches (Poisson sampling) pads them to its static physical size.
  physical = int(getattr(policy, "physical_batch_size", config.train.batch_size))
  physical = -(-physical // mesh.size) * mesh.size
  loader = BatchLoader(data.train, batch_size=physical, sharding=batch_sharding,
                       with_groups=True)

  # --- Restore or initialise. ----------------------------------------------------------------------
  ckpt = checkpoint_lib.Checkpointer(os.path.join(run_dir, "checkpoints"),
                                     max_to_keep=config.train.max_checkpoints_to_keep)
  host: dict[str, Any] = {"epoch": 0, "step": 0, "step_in_epoch": 0, "wall_time_s": 0.0,
                          "examples_seen": 0, "best": None}
  restored_pending: list[dict[str, float]] = []
  if ckpt.latest_step() is not None:
    abstract_sharded = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sharding)
    state, saved = ckpt.restore(abstract_sharded)
    host.update({k: v for k, v in saved.items()
                 if k not in ("policy", "grad_rule", "pending_metrics")})
    restored_pending = saved.get("pending_metrics", [])
    policy.load_state_dict(saved["policy"])
    grad_plan.load_state_dict(saved.get("grad_rule", {}))
  else:
    state = jax.jit(lambda k: init(rng=k), out_shardings=state_sharding)(rng)

  writer = metrics_lib.MetricsWriter(run_dir, resume_step=host["step"])
  timer = metrics_lib.Timer(host["wall_time_s"])
  total_estimate = config.train.epochs * policy.expected_steps_per_epoch()
  if config.train.max_steps:
    total_estimate = min(total_estimate, config.train.max_steps)
  progress = metrics_lib.Progress(total_steps=total_estimate, initial=host["step"],
                                  mode=config.train.progress)

  def make_ctx(metrics=None) -> PolicyContext:
    return PolicyContext(step=host["step"], epoch=host["epoch"], state=state, metrics=metrics,
                         probe=lambda name, idx: evaluator.probe(name, state, data.train, idx),
                         loss_fn=loss_fn, lr=host.get("lr", 0.0))

  def evaluate(split: str) -> dict[str, Any]:
    return evaluate_split(evaluator, state, data.splits()[split], splits=data,
                          train_group_counts=train_group_counts)

  window = metrics_lib.MetricsWindow(restored_pending)  # carried through checkpoints

  def fetch_window() -> None:
    """Brings the window to the host; raises on a non-finite loss, so no checkpoint and no
    log line is ever written after one."""
    bad = window.fetch()
    if bad is not None:
      last = ckpt.latest_step()
      raise NonFiniteLossError(
          f"the training loss became {bad} by step {host['step']} (epoch "
          f"{host['epoch']}); stopping. The last good checkpoint is "
          f"{'step ' + str(last) if last is not None else 'none'} in {ckpt.directory}. Lower "
          "config.optim.learning_rate or set config.optim.grad_clip_norm.")

  def flush_metrics() -> Optional[dict[str, float]]:
    """Writes the mean of the window's step metrics as one train record and starts a new one."""
    if not window:
      return None
    fetch_window()
    mean = window.take_mean()
    elapsed = time.time() - flush_metrics.t
    rate = (host["step"] - flush_metrics.s) * config.train.batch_size / max(elapsed, 1e-9)
    flush_metrics.t, flush_metrics.s = time.time(), host["step"]
    mean["examples_per_sec"] = rate
    writer.write(host["step"], "train", mean, epoch=host["epoch"])
    progress.update(host["step"], mean, rate)
    return mean

  flush_metrics.t, flush_metrics.s = time.time(), host["step"]

  def save() -> None:
    fetch_window()
    host["wall_time_s"] = timer.total()
    ckpt.save(host["step"], state, to_json({**host, "policy": policy.state_dict(),
                                            "grad_rule": grad_plan.state_dict(),
                                            "pending_metrics": window.state()}))

  interrupted = []
  previous_handler = signal.getsignal(signal.SIGINT)
  def on_sigint(signum, frame):  # finish the step, checkpoint, then stop
    del signum, frame
    interrupted.append(True)
  try:
    signal.signal(signal.SIGINT, on_sigint)
  except ValueError:  # not the main thread (e.g. a notebook worker): keep default handling
    previous_handler = None

  rule_key, train_step, host_operands, operands, project = object(), None, None, None, None

  def projected(params):
    """params under the rule's projection (e.g. the pruning mask in force), if it has one."""
    if project is None:
      return params
    return jax.jit(project)(*((params,) if operands is None else (params, operands)))

  def choose_rule() -> None:
    """Re-jits the step when the plan's rule key for this epoch changes (a mode switch, the
    first mask); new operands (a recomputed mask: the plan hands out a new object) are step
    arguments and reuse the compiled step. The projection runs whenever either changes."""
    nonlocal state, rule_key, train_step, host_operands, operands, project
    choice = grad_plan.choose(host["epoch"], state.params)
    if choice.key != rule_key:
      rule_key, train_step = choice.key, compile_step(choice)
    elif choice.operands is host_operands:
      return
    host_operands, project = choice.operands, choice.project
    operands = None if host_operands is None else jax.device_put(host_operands, repl)
    state = state.replace(params=projected(state.params))

  # --- The loop. ---------------------------------------------------------------------------------
  try:
    done = False
    while host["epoch"] < config.train.epochs and not done:
      choose_rule()
      ctx = make_ctx()
      steps = policy.steps_for(ctx)
      start = host["step_in_epoch"]
      for i in range(start, steps):
        indices, weights = policy.next_batch(make_ctx())
        batch = loader.device_batch(indices, weights)
        lr = lr_at(host["epoch"] + i / steps)
        host["lr"] = lr
        state, metrics = train_step(state, batch, np.float32(lr), operands)
        window.append(metrics)
        host["step"] += 1
        host["step_in_epoch"] = i + 1
        host["examples_seen"] += int(len(indices))
        fetched = None
        if host["step"] % config.train.log_every_steps == 0:
          fetched = flush_metrics()
        policy.on_step(make_ctx(fetched))
        if host["step"] % config.train.checkpoint_every_steps == 0 or interrupted:
          save()
        if interrupted:
          raise KeyboardInterrupt(f"interrupted at step {host['step']}; checkpoint saved, rerun "
                                  "the same command to resume")
        if config.train.max_steps and host["step"] >= config.train.max_steps:
          done = True
          break
      if done and host["step_in_epoch"] < steps:
        break
      flush_metrics()
      policy.on_epoch_end(make_ctx())
      if policy.wants_reinit():  # a fresh model, keeping the step counter and the RNG stream
        fresh = jax.jit(lambda k: init(rng=k), out_shardings=state_sharding)(
            jax.random.fold_in(rng, host["epoch"] + 1))
        state = fresh.replace(step=state.step, rng=state.rng)
        state = state.replace(params=projected(state.params))
        host["best"] = None  # model selection restarts with the new model
      host["epoch"] += 1
      host["step_in_epoch"] = 0
      rule_metrics = grad_plan.epoch_metrics(epoch=host["epoch"], steps=host["step"])
      if rule_metrics:  # e.g. epsilon spent so far, effective dimension
        writer.write(host["step"], "privacy", rule_metrics, epoch=host["epoch"])
      if host["epoch"] % config.train.eval_every_epochs == 0 or host["epoch"] == config.train.epochs:
        _eval_epoch(config, host, evaluate, writer, progress)
    flush_metrics()
    save()
  finally:
    progress.close()
    if previous_handler is not None:
      signal.signal(signal.SIGINT, previous_handler)

  # --- Results. ----------------------------------------------------------------------------------
  final = {"val": evaluate("val"), "test": evaluate("test")}
  chosen = host["best"]["metrics"] if (config.eval.select_by and host["best"]) else final
  results = _results(config, data, host, chosen, timer.total(), policy, objective, state)
  results.update(grad_plan.results(epoch=host["epoch"], steps=host["step"]))
  if config.eval.select_by and host["best"]:
    results["selected_epoch"] = host["best"]["epoch"]
  run_ctx = RunContext(config=config, data=data, state=state, run_dir=run_dir,
                       evaluator=evaluator, train_group_counts=train_group_counts)
  for component in (policy, objective):  # post-training steps (e.g. DFR's last-layer refit)
    if hasattr(component, "finalize"):
      results.update(component.finalize(run_ctx))
  writer.write(host["step"], "results", {k: v for k, v in results.items()
                                         if isinstance(v, (int, float))})
  writer.close()
  if "group_accuracy" in results:
    names = list(data.group_names) or [str(g) for g in range(data.num_groups)]
    per_group = np.array([results["group_accuracy"].get(n, np.nan) for n in names])
    group_evals.plot_group_accuracy(per_group, os.path.join(run_dir, "group_accuracy.png"),
                                    group_names=names)
  run_dir_lib.write_results(run_dir, to_json(results))
  ckpt.close()
  return results


def _eval_epoch(config, host, evaluate, writer, progress) -> None:
  """Validation metrics every eval epoch; keeps the best epoch's val/test when selecting."""
  val = evaluate("val")
  if val:
    writer.write(host["step"], "val", _scalars(val), epoch=host["epoch"])
    progress.message(f"epoch {host['epoch']}: val accuracy {val.get('accuracy', float('nan')):.4f}"
                     + (f", worst-group {val['worst_group_accuracy']:.4f}"
                        if "worst_group_accuracy" in val else ""))
  if config.eval.select_by:
    key = config.eval.select_by.removeprefix("val_")
    if key not in val:
      raise ConfigError(f"config.eval.select_by={config.eval.select_by!r} is not a validation "
                        f"metric of this run; allowed values: {['val_' + k for k in _scalars(val)]}")
    if host["best"] is None or val[key] > host["best"]["score"]:
      test = evaluate("test")
      writer.write(host["step"], "test", _scalars(test), epoch=host["epoch"])
      host["best"] = {"score": val[key], "epoch": host["epoch"],
                      "metrics": {"val": val, "test": test}}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or k.endswith("accuracy")}


def _results(config, data, host, chosen, wall_time, policy, objective, state) -> dict[str, Any]:
  """The flat results.json of the results contract (design.md)."""
  val, test = chosen["val"], chosen["test"]
  out: dict[str, Any] = {
      "config_hash": config_lib.config_hash(config),
      "config_name": config.name,
      "seed": config.seed,
      "method": config.method,
      "policy": config.policy.name,
      "dataset": config.data.name,
      "model": config.model.name,
      "steps": host["step"],
      "epochs": host["epoch"],
      "wall_time_s": wall_time,
      "examples_seen": host["examples_seen"],
      "examples_probed": policy.examples_probed,
  }
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
