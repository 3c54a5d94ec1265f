"""Sweeps: every point of a config file's `get_sweep()` as its own hashed run (finished runs
reused, interrupted ones resumed by `runner.run`), one at a time in this process or N at a
time in worker processes, with a line per run and an ETA, ending with the sweep's table.

`get_sweep()` returns a list whose items are dicts of dotted overrides applied to the file's
`get_config(variant)` (`{"seed": 1, "privacy.target_epsilon": 3.0}`), config specs
`'path.py:variant'` loaded like `--config`, or dicts whose "config" key holds such a spec (or
a ConfigDict the file built) and whose other keys are dotted overrides of it
(`{"config": "configs/crest/digits.py:full", "seed": 1}`). A file whose points all name their
config (a campaign, configs/campaigns/) needs no get_config; `get_sweep(arg)` may take the
spec's variant (`--config=file.py:hard`; None without one)."""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import importlib.util
import inspect
import multiprocessing
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from robustdata import config_lib, report, runner, validation
from robustdata.registry import ConfigError
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import driver

# The metric the closing table shows when none is asked for: the first every run reports.
TABLE_METRICS = ("test_accuracy", "worst_group_accuracy", "zero_shot_accuracy",
                 "linear_probe_accuracy", "targeted_asr", "backdoor_asr", "val_accuracy")
LOG_DIR = ".sweep_logs"  # under the workdir: one log per run a worker process ran
_RUN_ERRORS = (ConfigError, checkpoint_lib.CheckpointError, FloatingPointError)


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of a sweep: its position in get_sweep(), a label, its resolved config and run id."""
  index: int
  label: str
  config: ml_collections.ConfigDict
  run_id: str


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What became of a point: status 'reused', 'ran' or 'failed', seconds, results or error."""
  point: Point
  status: str
  seconds: float = 0.0
  results: dict[str, Any] | None = None
  error: str | None = None


def _fmt(value: Any) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any],
                    where: str = "") -> ml_collections.ConfigDict:
  """A copy of `config` with the dotted `overrides` set; a field the config does not hold or a
  value of the wrong type is a ConfigError naming the field (lists become tuples)."""
  out = copy.deepcopy(config)
  for dotted, value in overrides.items():
    if not isinstance(dotted, str) or not dotted:
      raise ConfigError(f"{where}override key {dotted!r} is not a dotted field name")
    parts = dotted.split(".")
    node, path = out, "config"
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"{where}config.{dotted} is not a known field ({path} is a value, "
                          "not a section)")
      if part not in node:
        raise ConfigError(f"{where}config.{dotted} is not a known field (no {part!r} in "
                          f"{path}; allowed: {sorted(node.keys())})")
      if depth < len(parts) - 1:
        node, path = node[part], f"{path}.{part}"
    leaf = parts[-1]
    value = tuple(value) if isinstance(value, list) else value
    try:
      node[leaf] = value
    except (TypeError, ValueError, AttributeError, KeyError) as e:
      raise ConfigError(f"{where}config.{dotted}={value!r}: {e}") from None
  return out


def _load_module(path: str):
  name = "robustdata_sweep_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def _sweep_items(spec: str) -> tuple[list[Any], ml_collections.ConfigDict | None]:
  """(get_sweep()'s items, the file's get_config(variant) or None where it has none)."""
  path, *variant = spec.split(":", 1)
  try:
    module = _load_module(path)
  except Exception:  # pylint: disable=broad-except
    validation.load_config_file(spec)  # a bad path or file: its own message
    raise
  base = validation.load_config_file(spec) if hasattr(module, "get_config") else None
  get_sweep = getattr(module, "get_sweep", None)
  if not callable(get_sweep):
    raise ConfigError(f"--config={spec}: {path} defines no get_sweep() (a list of dicts of "
                      "dotted overrides or of 'file.py:variant' strings)")
  takes_arg = bool(inspect.signature(get_sweep).parameters)
  if variant and base is None and not takes_arg:
    raise ConfigError(f"--config={spec}: {path} has no get_config and its get_sweep() takes "
                      f"no variant; drop ':{variant[0]}'")
  try:
    items = get_sweep(variant[0] if variant else None) if takes_arg else get_sweep()
  except ConfigError as e:
    raise ConfigError(f"--config={spec}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"--config={spec}: get_sweep() raised {type(e).__name__}: {e}") from None
  if not isinstance(items, (list, tuple)) or not items:
    raise ConfigError(f"--config={spec}: get_sweep() returned {items!r}; expected a non-empty "
                      "list of dicts of dotted overrides or 'file.py:variant' strings")
  return list(items), base


def load_points(spec: str) -> tuple[list[Point], list[str]]:
  """The points of `--config=spec`'s get_sweep() and the fields the sweep varies.

  Every point is loaded, resolved and validated, and no two may share a run id, before
  anything runs; problems are ConfigErrors naming the point and the field."""
  items, base = _sweep_items(spec)
  path = spec.split(":", 1)[0]
  points, by_id, swept = [], {}, []
  for i, item in enumerate(items):
    where = f"get_sweep() point {i} "
    if isinstance(item, Mapping) and "config" in item:
      item_spec, overrides = item["config"], {k: v for k, v in item.items() if k != "config"}
      if isinstance(item_spec, ml_collections.ConfigDict):  # built by the sweep file
        config, name = item_spec, f"config {item_spec.get('name')!r}"
      elif isinstance(item_spec, str):
        try:
          config, name = validation.load_config_file(item_spec), item_spec
        except ConfigError as e:
          raise ConfigError(f"get_sweep() point {i}: {e}") from None
      else:
        raise ConfigError(f"{where}has config={item_spec!r}; expected a 'file.py:variant' "
                          "string or a ConfigDict")
      label = ", ".join([name, *(f"{k}={_fmt(v)}" for k, v in overrides.items())])
      config = apply_overrides(config, overrides, f"{where}({label}): ")
      swept.extend(k for k in overrides if k not in swept)
    elif isinstance(item, Mapping):
      label = ", ".join(f"{k}={_fmt(v)}" for k, v in item.items()) or "(no overrides)"
      if base is None:
        raise ConfigError(f"{where}({label}): {path} defines no get_config(arg=None) for its "
                          "overrides to apply to; name the point's config with a 'config' key")
      config = apply_overrides(base, item, f"{where}({label}): ")
      swept.extend(k for k in item if k not in swept)
    elif isinstance(item, str):
      label = item
      try:
        config = validation.load_config_file(item)
      except ConfigError as e:
        raise ConfigError(f"get_sweep() point {i}: {e}") from None
    else:
      raise ConfigError(f"{where}is {item!r} ({type(item).__name__}); expected a dict of "
                        "dotted overrides, a 'file.py:variant' string or a dict with a "
                        "'config' key")
    try:
      config = config_lib.resolve(config)
      runner.validate_chain(config)
    except ConfigError as e:
      raise ConfigError(f"{where}({label}): {e}") from None
    point = Point(i, label, config, config_lib.run_id(config))
    if point.run_id in by_id:
      other = by_id[point.run_id]
      raise ConfigError(f"get_sweep() points {other.index} ({other.label}) and {i} ({label}) "
                        f"are the same run {point.run_id}; every point must differ in a field "
                        "that is part of the run's identity")
    by_id[point.run_id] = point
    points.append(point)
  named = any(isinstance(i, str) or "config" in i for i in items)
  if not swept or named:  # points that name their configs: the fields that differ between them
    leaves = [report.flatten(config_lib.to_dict(p.config)) for p in points]
    swept = sorted(f for f in set().union(*leaves)
                   if len({repr(leaf.get(f)) for leaf in leaves}) > 1
                   and not f.startswith(f"{config_lib.DISPLAY_SECTION}."))
    if "name" in swept and any(isinstance(i, Mapping) for i in items):
      # A campaign's closing table: fields that follow from the run name add nothing.
      values: dict[str, dict[Any, set[str]]] = {}
      for leaf in leaves:
        for f in swept:
          values.setdefault(f, {}).setdefault(leaf.get("name"), set()).add(repr(leaf.get(f)))
      swept = [f for f in swept if f in ("name", "seed")
               or any(len(v) > 1 for v in values[f].values())]
  return points, swept


def _summary(results: Mapping[str, Any]) -> str:
  shown = [k for k in TABLE_METRICS if isinstance(results.get(k), (int, float))][:2]
  return ", ".join(f"{k}={results[k]:.4f}" for k in shown)


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


class _Progress:
  """Prints one line per finished point with the elapsed time and the ETA of the rest (from
  the throughput of the runs that ran so far, so parallel jobs count)."""

  def __init__(self, total: int, to_run: int, log: Callable[[str], None]):
    self.total, self.to_run, self.log = total, to_run, log
    self.done = self.ran = 0
    self.start = time.time()

  def __call__(self, outcome: Outcome) -> None:
    self.done += 1
    p = outcome.point
    if outcome.status == "reused":
      what = f"reused   {_summary(outcome.results or {})}"
    else:
      self.ran += 1
      elapsed = time.time() - self.start
      left = self.to_run - self.ran
      eta = _duration(elapsed / self.ran * left) if left else "0s"
      detail = (_summary(outcome.results or {}) if outcome.status == "ran"
                else ((outcome.error or "").strip().splitlines() or ["error"])[-1][:200])
      what = (f"{outcome.status:8} {detail} in {_duration(outcome.seconds)}; "
              f"elapsed {_duration(elapsed)}, ETA {eta}")
    width = len(str(self.total))
    self.log(f"[{self.done:>{width}}/{self.total}] {p.run_id} ({p.label}): {what}")


def _run_here(point: Point, workdir: str) -> Outcome:
  t0 = time.time()
  try:
    _, results = runner.run(point.config, workdir)
  except _RUN_ERRORS as e:
    return Outcome(point, "failed", time.time() - t0, error=f"{type(e).__name__}: {e}")
  return Outcome(point, "ran", time.time() - t0, results=results)


def _forward_sigterm(stop: list[int]):
  """While workers run: a SIGTERM to this process is passed on to them (each checkpoints its
  point and stops, as under Ctrl-C, which reaches the whole process group) and recorded in
  `stop`, so the sweep starts no further point and no worker is left running on its own.
  Returns the previous handler (None off the main thread, where handlers cannot be set)."""
  def handler(signum, frame):
    del frame
    stop.append(signum)
    for child in multiprocessing.active_children():
      try:
        os.kill(child.pid, signum)
      except ProcessLookupError:
        pass
  try:
    return signal.signal(signal.SIGTERM, handler)
  except ValueError:
    return None


def _worker_init() -> None:
  """Each worker process: JAX allocates GPU memory as needed (the workers share devices)."""
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _run_in_worker(config: dict[str, Any], run_id: str, workdir: str) -> tuple[str, Any, float]:
  """A worker process's run of one point, its output going to <workdir>/.sweep_logs/<run id>.log;
  returns (status, results or error text, seconds)."""
  import logging  # pylint: disable=g-import-not-at-top
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
  log_dir = os.path.join(workdir, LOG_DIR)
  os.makedirs(log_dir, exist_ok=True)
  sys.stdout.flush()
  sys.stderr.flush()
  fd = os.open(os.path.join(log_dir, f"{run_id}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)
  t0 = time.time()
  try:
    config_dict = config_lib.from_dict(config)
    if config_lib.run_id(config_dict) != run_id:
      raise ConfigError(f"the config sent to the worker hashes to "
                        f"{config_lib.run_id(config_dict)}, not {run_id}")
    _, results = runner.run(config_dict, workdir)
    return "ran", results, time.time() - t0
  except driver.Interrupted as e:
    return "interrupted", str(e), time.time() - t0
  except _RUN_ERRORS as e:
    return "failed", f"{type(e).__name__}: {e}", time.time() - t0
  except Exception:  # pylint: disable=broad-except
    text = traceback.format_exc()
    print(text, file=sys.stderr, flush=True)
    return "failed", text, time.time() - t0
  finally:
    sys.stdout.flush()
    sys.stderr.flush()


def run_points(points: Sequence[Point], workdir: str, *, jobs: int = 1,
               log: Callable[[str], None] = print) -> list[Outcome]:
  """Runs every point not finished under `workdir`: in this process (jobs=1) or `jobs` at a time
  in spawned worker processes. A failed point does not stop the others; an interrupt (SIGINT,
  SIGTERM) stops the sweep after the running points checkpoint (driver.Interrupted)."""
  if jobs < 1:
    raise ConfigError(f"--jobs={jobs} must be >= 1")
  outcomes: dict[int, Outcome] = {}
  pending = []
  for p in points:
    results = runner.finished_results(p.config, workdir)
    if results is None:
      pending.append(p)
    else:
      outcomes[p.index] = Outcome(p, "reused", results=results)
  log(f"sweep: {len(points)} runs, {len(points) - len(pending)} finished already, "
      f"{len(pending)} to run" + (f", {jobs} at a time" if jobs > 1 and pending else "")
      + f"; workdir {workdir}")
  progress = _Progress(len(points), len(pending), log)
  for o in sorted(outcomes.values(), key=lambda o: o.point.index):
    progress(o)
  if jobs == 1:
    for p in pending:
      outcomes[p.index] = _run_here(p, workdir)  # driver.Interrupted propagates
      progress(outcomes[p.index])
  elif pending:
    interrupted = None
    context = multiprocessing.get_context("spawn")  # never fork a process that holds JAX
    stop: list[int] = []
    previous = _forward_sigterm(stop)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(pending)), mp_context=context,
        initializer=_worker_init) as pool:
      futures = {pool.submit(_run_in_worker, config_lib.to_dict(p.config), p.run_id,
                             workdir): p for p in pending}
      try:
        for future in concurrent.futures.as_completed(futures):
          if stop:  # SIGTERM: the running points checkpoint and stop; start no other
            for f in futures:
              f.cancel()
            interrupted = interrupted or ("interrupted by SIGTERM; running points "
                                          "checkpointed, rerun to resume")
          if future.cancelled():
            continue
          p = futures[future]
          try:
            status, value, seconds = future.result()
          except concurrent.futures.process.BrokenProcessPool as e:
            if stop:  # a worker the signal reached outside a run: the point did not finish
              continue
            status, value, seconds = "failed", f"worker process died: {e}", 0.0
          if status == "interrupted":
            interrupted = interrupted or value
            continue
          outcomes[p.index] = (Outcome(p, "ran", seconds, results=value) if status == "ran"
                               else Outcome(p, "failed", seconds, error=value))
          progress(outcomes[p.index])
      except KeyboardInterrupt:
        interrupted = "interrupted; running points checkpointed, rerun to resume"
        pool.shutdown(wait=True, cancel_futures=True)
      finally:
        if previous is not None:
          signal.signal(signal.SIGTERM, previous)
    if interrupted:
      raise KeyboardInterrupt(interrupted)
  return [outcomes[p.index] for p in points if p.index in outcomes]


def closing_table(outcomes: Sequence[Outcome], workdir: str, swept: Sequence[str],
                  metric: str | None = None) -> str:
  """The Markdown table of the sweep's finished runs (report.table over their run dirs): rows
  by the swept fields that vary, other than the seed, averaged over seeds. A field that only
  some runs hold (an upstream stage's, when the sweep mixes chained and plain configs) is left
  out: the table is a summary, the report command makes the real ones."""
  runs = [r for r in (report.read_run(os.path.join(workdir, o.point.run_id))
                      for o in outcomes if o.status != "failed") if r is not None]
  if not runs:
    return "no finished runs"
  if not metric:
    metric = next((m for m in TABLE_METRICS if all(m in r.results for r in runs)), None)
    if metric is None:
      return "no metric that every run reports; use experiments.report with --metric"
  values = {f: [report.field_value(r, f) for r in runs] for f in swept}
  rows = [f for f, v in values.items() if f != "seed" and not report.is_display(f)
          and report.MISSING not in v and len({repr(x) for x in v}) > 1]
  return report.to_markdown(report.table(runs, rows=rows, metric=metric))


def sweep_cli(spec: str, workdir: str, *, jobs: int = 1, metric: str | None = None,
              log: Callable[[str], None] = print) -> int:
  """`experiments/sweep.py`: plans, runs and tabulates; exit 0 when every point finished, 1 when
  some failed, 2 with one message for bad input, 128+signal when interrupted."""
  if jobs > 1:  # before JAX starts here: workers and this process share the devices
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  try:
    points, swept = load_points(spec)
    outcomes = run_points(points, workdir, jobs=jobs, log=log)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except driver.Interrupted as e:
    print(str(e), file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt as e:
    print(str(e) or "interrupted", file=sys.stderr)
    return 130
  failed = [o for o in outcomes if o.status == "failed"]
  try:
    log("\n" + closing_table(outcomes, workdir, swept, metric))
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if failed:
    log(f"\n{len(failed)} of {len(outcomes)} runs failed:")
    for o in failed:
      log(f"  {o.point.run_id} ({o.point.label}): {o.error}")
    return 1
  return 0
