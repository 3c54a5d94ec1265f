"""The one loop under every trainer: `Driver(config, run_dir).run(task)`.

The driver owns everything that is not method-specific: the mesh (distributed init happens in
`runner.run`, before JAX is first used), the run-directory lock, restore-or-init, the metric
writers and the progress line, the NaN check, SIGINT/SIGTERM, the log/checkpoint/eval/max-steps
cadence and results.json. Under several processes every process runs the same loop and takes
part in checkpoint saves and restores; process 0 alone writes metrics, progress and
results.json, and a signal to any process stops all of them at the same step
(docs/multihost.md). A trainer is a `Task`: its initial state, the steps of each epoch, the
compiled step, hooks after a step and around an epoch's end, evaluation, its host state for the
checkpoint and its results. The supervised trainer (`train/supervised.py`) and the contrastive
trainer (`contrastive/trainer.py`) are the two tasks today.

One epoch, as the driver runs it:
  steps = task.start_epoch(loop)            # plan (on resume: the rest of the epoch)
  for each step: metrics, n = task.train_step(loop, i)
                 log every log_every_steps -> task.after_step(loop, logged)
                 checkpoint every checkpoint_every_steps (and on a signal)
  task.end_epoch(loop); loop.epoch += 1; task.after_epoch(loop, eval_due)
"""

from __future__ import annotations

import abc
import dataclasses
import os
import signal
import time
from typing import Any, Optional

import jax

from robustdata import config_lib
from robustdata import run_dir as run_dir_lib
from robustdata.data.policies import to_json
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import metrics as metrics_lib
from robustdata.train import sharding as sharding_lib


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf loss; the last good checkpoint is kept."""


class Interrupted(Exception):
  """SIGINT or SIGTERM arrived: the run checkpointed and stopped; rerunning resumes it."""

  def __init__(self, signum: int, step: int):
    self.signum, self.step = signum, step
    super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; checkpoint "
                     "saved, rerun the same command to resume")

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


@dataclasses.dataclass
class Loop:
  """The counters of a run; checkpointed (with the task's host state) beside its train state."""

  epoch: int = 0
  step: int = 0
  step_in_epoch: int = 0
  wall_time_s: float = 0.0
  examples_seen: int = 0


_LOOP_KEYS = tuple(f.name for f in dataclasses.fields(Loop))


class Task(abc.ABC):
  """A trainer plugged into the driver. `state` is the device train state the driver
  checkpoints; everything else the task keeps on the host goes through `host_state`."""

  loss_name = "training loss"  # named by the non-finite-loss message
  nan_hint = "Lower config.optim.learning_rate or set config.optim.grad_clip_norm."
  state: Any = None

  def validate(self, config, *, num_devices: int) -> None:
    """Raises ConfigError before anything compiles."""

  @abc.abstractmethod
  def setup(self, driver: "Driver") -> None:
    """Data, model, compiled functions; `driver.config`, `.mesh`, `.run_dir` are set. A task
    keeps `self.config` (the resolved config)."""

  @abc.abstractmethod
  def abstract_state(self) -> Any:
    """The state's shapes, dtypes and shardings (what a checkpoint is restored onto)."""

  @abc.abstractmethod
  def init_state(self) -> Any:
    """A fresh state (no checkpoint)."""

  def host_state(self) -> dict[str, Any]:
    """The task's host state, saved into the checkpoint (JSON-able)."""
    return {}

  def load_host_state(self, saved: dict[str, Any]) -> None:
    """Restores what `host_state` returned."""
    del saved

  def epochs(self) -> int:
    """The run's number of epochs (crafting stages count restarts instead)."""
    return int(self.config.train.epochs)

  @abc.abstractmethod
  def expected_steps(self) -> int:
    """The planned number of steps of the whole run (progress and ETA)."""

  @abc.abstractmethod
  def start_epoch(self, loop: Loop) -> int:
    """Prepares epoch `loop.epoch` (resumed at `loop.step_in_epoch`); its number of steps."""

  @abc.abstractmethod
  def train_step(self, loop: Loop, i: int) -> tuple[dict[str, Any], int]:
    """Runs step `i` of the epoch on `self.state`; (device metrics, examples in the batch)."""

  def after_step(self, loop: Loop, logged: Optional[dict[str, float]]) -> None:
    """After each step; `logged` is the train record written at this step, if any."""

  def end_epoch(self, loop: Loop) -> None:
    """After the epoch's last step, before the epoch counter moves on."""

  def after_epoch(self, loop: Loop, *, eval_due: bool) -> None:
    """After the epoch counter moved on; `eval_due` follows config.train.eval_every_epochs and
    is always true after the last epoch."""

  @abc.abstractmethod
  def results(self, loop: Loop, wall_time_s: float) -> dict[str, Any]:
    """The run's results once training is done, added to `Driver.results_header`."""

  def close(self) -> None:
    """Joins or cancels background work; called however the run ends."""


class Driver:
  """Runs a `Task` in a run directory; see the module docstring."""

  def __init__(self, config, run_dir: str):
    self.config, self.run_dir = config, run_dir
    self.mesh = None
    self.writer: Optional[metrics_lib.MetricsWriter] = None
    self.progress: Optional[metrics_lib.Progress] = None
    self.ckpt: Optional[checkpoint_lib.Checkpointer] = None
    self.task: Optional[Task] = None
    self.loop = Loop()
    self.window: Optional[metrics_lib.MetricsWindow] = None
    self.timer: Optional[metrics_lib.Timer] = None
    self._last_log = (0.0, 0)  # (time, step) of the last train record
    self._signal: Optional[int] = None

  def run(self, task: Task) -> dict[str, Any]:
    config = self.config
    if not config_lib.is_resolved(config):
      raise ValueError("a trainer takes a resolved config: pass config_lib.resolve(config) (what "
                       "runner.run hashes and records)")
    self.mesh = sharding_lib.make_mesh()
    sharding_lib.check_batch_fields(config.train)
    task.validate(config, num_devices=self.mesh.size)
    previous = self._install_signal_handlers()  # a signal during setup stops at the first step
    with run_dir_lib.locked(self.run_dir):
      try:
        return self._run(task)
      finally:
        self._restore_signal_handlers(previous)
        task.close()
        if self.writer is not None:
          self.writer.close()
        if self.ckpt is not None:
          self.ckpt.close()

  def _run(self, task: Task) -> dict[str, Any]:
    config, train = self.config, self.config.train
    self.task = task
    task.setup(self)
    self.ckpt = checkpoint_lib.Checkpointer(
        os.path.join(self.run_dir, "checkpoints"), max_to_keep=train.max_checkpoints_to_keep,
        identity={"config_hash": config_lib.config_hash(config), "seed": int(config.seed)})
    self.loop, pending, offset = Loop(), [], None
    if self.ckpt.latest_step() is not None:
      task.state, saved = self.ckpt.restore(task.abstract_state())
      pending = saved.pop("pending_metrics", [])
      offset = saved.pop("metrics_offset", None)
      self.loop = Loop(**{k: saved.pop(k) for k in _LOOP_KEYS if k in saved})
      task.load_host_state(saved)
    else:
      task.state = task.init_state()
    loop, primary = self.loop, sharding_lib.is_primary()  # process 0 writes the run's files
    writer = metrics_lib.MetricsWriter if primary else metrics_lib.NullWriter
    self.writer = writer(self.run_dir, resume_step=loop.step, resume_offset=offset)
    self.timer = metrics_lib.Timer(loop.wall_time_s)
    total = task.expected_steps()
    if train.max_steps:
      total = min(total, train.max_steps)
    self.progress = metrics_lib.Progress(total_steps=max(1, total), initial=loop.step,
                                         mode=train.progress if primary else "none")
    self.window = metrics_lib.MetricsWindow(pending)  # carried through checkpoints
    self._last_log = (time.time(), loop.step)
    try:
      self._train()
    finally:
      self.progress.close()
    wall = self.timer.total()
    results = {**self.results_header(wall), **task.results(loop, wall)}
    self.writer.write(loop.step, "results", {k: v for k, v in results.items()
                                             if isinstance(v, (int, float))
                                             and not isinstance(v, bool)})
    run_dir_lib.write_results(self.run_dir, to_json(results))
    return results

  def results_header(self, wall_time_s: float) -> dict[str, Any]:
    """The keys of the results contract every run has; a task's results add to them."""
    config, loop = self.config, self.loop
    return {"config_hash": config_lib.config_hash(config), "config_name": config.name,
            "seed": config.seed, "method": config.method, "dataset": config.data.name,
            "steps": loop.step, "epochs": loop.epoch, "wall_time_s": wall_time_s,
            "examples_seen": loop.examples_seen}

  def _train(self) -> None:
    """The epochs: the task's steps with the log, checkpoint, max-steps and eval cadence."""
    task, loop, train = self.task, self.loop, self.config.train
    epochs = task.epochs()
    while loop.epoch < epochs:
      steps = task.start_epoch(loop)
      for i in range(loop.step_in_epoch, steps):
        if train.max_steps and loop.step >= train.max_steps:
          break
        metrics, examples = task.train_step(loop, i)
        self.window.append(metrics)
        loop.step += 1
        loop.step_in_epoch = i + 1
        loop.examples_seen += int(examples)
        logged = self._flush() if loop.step % train.log_every_steps == 0 else None
        task.after_step(loop, logged)
        stop = self._agreed_signal()
        if loop.step % train.checkpoint_every_steps == 0 or stop:
          self._save()
        if stop:
          raise Interrupted(stop, loop.step)
      if loop.step_in_epoch < steps:  # stopped by max_steps inside the epoch
        break
      self._flush()
      task.end_epoch(loop)
      loop.epoch += 1
      loop.step_in_epoch = 0
      task.after_epoch(loop, eval_due=(loop.epoch % train.eval_every_epochs == 0
                                       or loop.epoch == epochs))
      if train.max_steps and loop.step >= train.max_steps:
        break
    self._flush()
    self._save()
    stop = self._agreed_signal()
    if stop:  # arrived after the last step: the final checkpoint holds everything
      raise Interrupted(stop, loop.step)

  def _agreed_signal(self) -> int:
    """The signal that stops the run at this step (0: none). Under several processes one that
    reached any process stops all of them at the same step (one scalar all-gather per step),
    so they save the same checkpoint and none waits for the others in a collective."""
    return sharding_lib.max_over_processes(self._signal or 0)

  def _fetch_window(self) -> None:
    """Brings the window to the host; a non-finite loss stops the run before any log line or
    checkpoint is written after it."""
    bad = self.window.fetch()
    if bad is not None:
      last = self.ckpt.latest_step()
      raise NonFiniteLossError(
          f"the {self.task.loss_name} became {bad} by step {self.loop.step} (epoch "
          f"{self.loop.epoch}); stopping. The last good checkpoint is "
          f"{'step ' + str(last) if last is not None else 'none'} in {self.ckpt.directory}. "
          f"{self.task.nan_hint}")

  def _flush(self) -> Optional[dict[str, float]]:
    """Writes the mean of the window's step metrics as one train record."""
    if not self.window:
      return None
    self._fetch_window()
    mean = self.window.take_mean()
    now, step = time.time(), self.loop.step
    then, then_step = self._last_log
    rate = (step - then_step) * self.config.train.batch_size / max(now - then, 1e-9)
    self._last_log = (now, step)
    mean["examples_per_sec"] = rate
    self.writer.write(step, "train", mean, epoch=self.loop.epoch)
    self.progress.update(step, mean, rate)
    return mean

  def _save(self) -> None:
    """Checkpoints the train state with the counters, the task's host state, the unlogged
    window and the log's byte offset."""
    self._fetch_window()
    self.loop.wall_time_s = self.timer.total()
    self.writer.sync()
    host = {**dataclasses.asdict(self.loop), **self.task.host_state(),
            "pending_metrics": self.window.state(), "metrics_offset": self.writer.offset()}
    self.ckpt.save(self.loop.step, self.task.state, to_json(host))

  # --- Signals: finish the step, checkpoint, stop with 128 + signum. ----------------------------

  def _install_signal_handlers(self) -> dict[int, Any]:
    def handler(signum, frame):
      del frame
      self._signal = signum
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
      try:
        previous[signum] = signal.signal(signum, handler)
      except ValueError:  # not the main thread (e.g. a notebook worker): default handling
        pass
    return previous

  @staticmethod
  def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def abstract_on(abstract: Any, shardings: Any) -> Any:
  """`abstract` shapes and dtypes placed on `shardings` (what orbax restores onto)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)
