"""What the entrypoint does, as library functions: run a config, print its results table,
and re-run a finished run to check its results reproduce."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Callable

from robustdata import config_lib
from robustdata.registry import TRAINERS, ConfigError
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import loop
from robustdata.train import run_dir as run_dir_lib

# Results that legitimately differ between two runs of the same config: these, and every
# timing key ending in '_time_s' (policies and objectives add their own, e.g. crest_quad_time_s).
NONDETERMINISTIC = ("wall_time_s", "selection_time_s", "examples_per_sec")


def is_nondeterministic(key: str) -> bool:
  """True for result keys that may differ between two runs of the same config (timings)."""
  return key in NONDETERMINISTIC or key.endswith("_time_s")


def run(config, workdir: str) -> tuple[str, dict[str, Any]]:
  """Creates (or resumes) the run directory of `config` under `workdir` and trains.

  The run's config is `config_lib.with_defaults(config)`: the data policy's defaults are part of
  its hash and of config.json."""
  trainer = TRAINERS.get(config.get("trainer", "supervised"))  # a bad name fails here
  config = config_lib.with_defaults(config)
  run_dir = run_dir_lib.prepare(config, workdir)
  return run_dir, trainer(config, run_dir)


def finished_results(config, workdir: str) -> dict[str, Any] | None:
  """The results.json of `config`'s run under `workdir` if that run finished, else None
  (campaign scripts reuse finished runs instead of re-running them)."""
  path = os.path.join(workdir, config_lib.run_id(config_lib.with_defaults(config)),
                      "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def run_or_reuse(config, workdir: str, *, seed: int,
                 describe: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
  """For campaign scripts: `config` with `seed` and no progress bar; the results of its
  finished run under `workdir` if there is one, else a fresh run, printing one line
  (`describe(results)` and the seconds it took)."""
  with config.unlocked():
    config.seed = seed
    config.train.progress = "none"
  finished = finished_results(config, workdir)
  if finished is not None:
    return finished
  t0 = time.time()
  _, results = run(config, workdir)
  print(f"  {describe(results)}, {time.time() - t0:.0f} s", flush=True)
  return results


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
  except (ConfigError, checkpoint_lib.CheckpointError, loop.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
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
  """Re-runs `run_dir`'s config.json into a scratch directory and compares results.json."""
  with open(os.path.join(run_dir, "config.json")) as f:
    config = config_lib.from_dict(json.load(f))
  with open(os.path.join(run_dir, "results.json")) as f:
    expected = json.load(f)
  scratch = scratch or tempfile.mkdtemp(prefix="reproduce-")
  new_dir, _ = run(config, scratch)
  with open(os.path.join(new_dir, "results.json")) as f:
    got = json.load(f)
  rows = compare(expected, got)
  return all(r[3] for r in rows), rows


def reproduce_cli(run_dir: str) -> int:
  if not os.path.exists(os.path.join(run_dir, "results.json")):
    print(f"error: --reproduce={run_dir!r} holds no results.json (not a finished run)",
          file=sys.stderr)
    return 2
  ok, rows = reproduce(run_dir)
  width = max(len(r[0]) for r in rows)
  for key, a, b, same in rows:
    if isinstance(a, (dict, list)):
      a, b = "(object)", "(object)" if same else "(differs)"
    print(f"{key:<{width}}  {'match' if same else 'MISMATCH':8}  {a}  {b}")
  print("\nreproduced: all results match" if ok else "\nNOT reproduced: see MISMATCH rows")
  return 0 if ok else 1
