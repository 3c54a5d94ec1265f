"""Runs configs in a child process on one CPU (one XLA:CPU thread), for the slow effect tests.

XLA:CPU's multi-threaded reductions change the summation order with the thread count, and over
25 epochs that changes a CLIP run's trajectory enough to move an attack success rate by more
than a defence's margin (a SafeCLIP/CLIP pair gave backdoor ASR 0.249 / 0.306 on two cores and
0.126 / 0.321 on one). One thread makes such a test reproduce the one-core runs its bounds were
measured on. The child takes the CPU of its pytest-xdist worker's index (gw0 -> the first
allowed CPU, gw1 -> the second, ...), so two effect tests in two workers do not share a core;
without sched_setaffinity (macOS) XLA is asked for one thread instead.
"""

from __future__ import annotations

import json
import os

from tests.conftest import run_python

_CHILD = r"""
import os, sys
if hasattr(os, "sched_setaffinity"):
  cpus = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {cpus[int(sys.argv[2]) % len(cpus)]})
import importlib, json
from robustdata import runner, sweep
out, run_dirs = [], []
for spec, overrides in json.loads(sys.argv[3]):
  module, _, arg = spec.partition(":")
  config = importlib.import_module(module).get_config(*([arg] if arg else []))
  overrides = {dotted: run_dirs[int(value[len("@run_dir:"):])]
               if isinstance(value, str) and value.startswith("@run_dir:") else value
               for dotted, value in overrides.items()}
  config = sweep.apply_overrides(config, {"train.progress": "none", **overrides})
  run_dir, results = runner.run(config, sys.argv[1])
  run_dirs.append(run_dir)
  out.append(results)
print("RESULTS " + json.dumps(out, default=float))
"""


def run_configs(runs: list[tuple[str, dict]], workdir: str) -> list[dict]:
  """results.json of each (config module[:variant], {dotted field: value}) run, in order, run
  one after another in one single-threaded child process. A value "@run_dir:i" is the run
  directory of the i-th run of the list (e.g. a CleanCLIP fine-tuning of an earlier CLIP run)."""
  worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
  index = int(worker[2:]) if worker[2:].isdigit() else 0
  single = {} if hasattr(os, "sched_setaffinity") else {
      "XLA_FLAGS": "--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=false"}
  proc = run_python(["-c", _CHILD, workdir, str(index), json.dumps(runs)], devices=1,
                    timeout=1800, env_extra=single)
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")][-1]
  return json.loads(line[len("RESULTS "):])
