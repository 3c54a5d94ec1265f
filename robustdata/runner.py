"""What the entrypoint does, as library functions: run a config, print its results table,
and re-run a finished run to check its results reproduce."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
import time
from typing import Any

import jax

from robustdata import config_lib
from robustdata.registry import TRAINERS, ConfigError
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import driver
from robustdata import run_dir as run_dir_lib
from robustdata.train import sharding as sharding_lib

# Results that legitimately differ between two runs of the same config: these, and every
# timing key ending in '_time_s' (policies and objectives add their own, e.g. crest_quad_time_s).
NONDETERMINISTIC = ("wall_time_s", "selection_time_s", "examples_per_sec")


def is_nondeterministic(key: str) -> bool:
  """True for result keys that may differ between two runs of the same config (timings)."""
  return key in NONDETERMINISTIC or key.endswith("_time_s")


def run(config, workdir: str) -> tuple[str, dict[str, Any]]:
  """Creates (or resumes) the run directory of `config` under `workdir` and trains.

  Multi-host initialisation comes first, before anything asks JAX for its devices. The run's
  config is `config_lib.resolve(config)`: every registered default is part of its hash and of
  config.json, and the trainer receives it resolved."""
  trainer = TRAINERS.get(config.get("trainer", "supervised"))  # a bad name fails here
  sharding_lib.maybe_initialize_distributed(bool(config.train.distributed))
  config = config_lib.resolve(config)
  validate_chain(config)  # every stage's config, before any stage compiles
  for section in config_lib.stage_sections(config):  # upstream stages first, reused if done
    _run_upstream(config[section], workdir)
  run_dir = run_dir_lib.run_path(config, workdir)
  with run_dir_lib.locked(run_dir):  # before config.json and meta.json are written
    run_dir_lib.prepare(config, workdir)
    return run_dir, trainer(config, run_dir)


def _run_upstream(config, workdir: str, *, poll_s: float = 5.0) -> None:
  """Runs an upstream stage unless it finished; while another process runs it (a sweep's
  victims sharing one substitute), waits for that process and then reuses its results."""
  waiting = False
  while finished_results(config, workdir) is None:
    try:
      run(config, workdir)
    except run_dir_lib.RunDirInUse as e:
      if not waiting:
        print(f"waiting for the upstream stage: {e}", file=sys.stderr, flush=True)
        waiting = True
      time.sleep(poll_s)


def validate_chain(config) -> None:
  """Validates `config` and the configs of its upstream stages with their trainers' tasks
  (`trainer.task`), raising ConfigError before anything runs."""
  for section in config_lib.stage_sections(config):
    validate_chain(config[section])
  task = getattr(TRAINERS.get(config.get("trainer", "supervised")), "task", None)
  if task is not None:
    task().validate(config, num_devices=jax.device_count())


def stage_dir(config, section: str, run_dir: str) -> str:
  """The run directory of the upstream stage `config.<section>` of the run in `run_dir` (the
  same workdir; the name is the upstream config's run id)."""
  return os.path.join(os.path.dirname(os.path.abspath(run_dir)),
                      config_lib.run_id(config_lib.resolve(config[section])))


def finished_results(config, workdir: str) -> dict[str, Any] | None:
  """The results.json of `config`'s run under `workdir` if that run finished, else None
  (sweeps and upstream stages reuse finished runs instead of re-running them)."""
  path = os.path.join(workdir, config_lib.run_id(config_lib.resolve(config)),
                      "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def format_results(results: dict[str, Any]) -> str:
  """A two-column table of the scalar results."""
  rows = [(k, v) for k, v in sorted(results.items())
          if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
  width = max(len(k) for k, _ in rows)
  lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
  for k, v in rows:
    lines.append(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
  return "\n".join(lines)


def run_cli(config, workdir: str) -> int:
  """Runs a config from the command line; a bad input ends with one message, no traceback."""
  try:
    run_dir, results = run(config, workdir)
  except (ConfigError, checkpoint_lib.CheckpointError, driver.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except driver.Interrupted as e:
    print(str(e), file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:  # before the run's signal handlers were installed
    print("interrupted before training started; nothing to resume yet, rerun the same command",
          file=sys.stderr)
    return 128 + signal.SIGINT
  if sharding_lib.is_primary():  # one table per run, not one per process
    print(f"\nrun directory: {run_dir}\n")
    print(format_results(results))
  return 0


def compare(expected: dict[str, Any], got: dict[str, Any], *, rtol: float = 0.0):
  """(key, expected, got, matches) for every deterministic result key."""
  rows = []
  for key in sorted(set(expected) | set(got)):
    if is_nondeterministic(key):
      continue
    a, b = expected.get(key), got.get(key)
    if isinstance(a, float) and isinstance(b, float):
      same = a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * abs(a)
    else:
      same = a == b
    rows.append((key, a, b, same))
  return rows


def reproduce(run_dir: str, scratch: str | None = None) -> tuple[bool, list]:
  """Re-runs `run_dir`'s config.json into a scratch directory and compares results.json.

  A run directory without either file, a file that is not a JSON object, or a config that
  does not validate is a ConfigError naming the file, before anything runs."""
  def read(name: str) -> dict[str, Any]:
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
      raise ConfigError(f"--reproduce={run_dir!r} holds no {name} (not a finished run directory)")
    return run_dir_lib.read_json_object(path)

  from robustdata import validation  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(run_dir):
    raise ConfigError(f"--reproduce={run_dir!r} is not a directory")
  raw, expected = read("config.json"), read("results.json")
  try:
    config = config_lib.from_dict(raw)
    validation.check_config(config)
  except ConfigError as e:
    raise ConfigError(f"{os.path.join(run_dir, 'config.json')}: {e}") from None
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    raise ConfigError(f"{os.path.join(run_dir, 'config.json')} is not a valid run config "
                      f"({type(e).__name__}: {e})") from None
  scratch = scratch or tempfile.mkdtemp(prefix="reproduce-")
  new_dir, _ = run(config, scratch)
  with open(os.path.join(new_dir, "results.json")) as f:
    got = json.load(f)
  rows = compare(expected, got)
  return all(r[3] for r in rows), rows


def reproduce_cli(run_dir: str) -> int:
  """`--reproduce`: a table of the results metric by metric; exit 0 if all match, 1 if not, 2
  with one message (no traceback) for a bad run directory or a run that fails."""
  try:
    ok, rows = reproduce(run_dir)
  except (ConfigError, checkpoint_lib.CheckpointError, FloatingPointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  width = max((len(r[0]) for r in rows), default=0)
  for key, a, b, same in rows:
    if isinstance(a, (dict, list)):
      a, b = "(object)", "(object)" if same else "(differs)"
    print(f"{key:<{width}}  {'match' if same else 'MISMATCH':8}  {a}  {b}")
  print("\nreproduced: all results match" if ok else "\nNOT reproduced: see MISMATCH rows")
  return 0 if ok else 1
