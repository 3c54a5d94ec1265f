"""Time to result: `python -m experiments.main` from process start to results.json, with a cold
and then a warm persistent compilation cache.

For each config: a run with an empty cache directory (cold: every jitted function compiles),
then the same config in a fresh workdir with that cache (warm: the executables load from disk).
Wall time is the whole command (interpreter start, imports, data, compiles, training,
evaluation), `compile share` is 1 - warm / cold. Rounds alternate the configs, and the table
shows medians. The last table compares CREST with full-data training on the same data, both
warm (the issue's question: is CREST faster end to end once compiles are cached?).

  python benchmarks/time_to_result.py [--rounds 3] [--configs quickstart.py crest/digits.py ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_CONFIGS = ("quickstart.py", "crest/digits.py", "crest/digits.py:full")
# `--configs crest/digits.py:hard crest/digits.py:hard,full` adds the harder task (~2 min a run).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(spec: str, workdir: str, cache: str) -> tuple[float, dict]:
  """(wall seconds of the whole command, its results.json) for one run of configs/<spec>."""
  env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  env.pop("ROBUSTDATA_COMPILATION_CACHE", None)
  cmd = [sys.executable, "-m", "experiments.main", f"--config=configs/{spec}",
         f"--workdir={workdir}", f"--compilation_cache={cache}", "--config.train.progress=none"]
  start = time.perf_counter()
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - start
  if done.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
  (run,) = [d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d))]
  with open(os.path.join(workdir, run, "results.json")) as f:
    return wall, json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
  args = parser.parse_args()
  times: dict[str, dict[str, list[float]]] = {c: {"cold": [], "warm": []} for c in args.configs}
  results: dict[str, dict] = {}
  scratch = tempfile.mkdtemp(prefix="time_to_result_")
  try:
    for r in range(args.rounds):
      for spec in args.configs:
        cache = os.path.join(scratch, f"cache_{r}_{spec.replace('/', '_')}")
        for kind in ("cold", "warm"):
          workdir = os.path.join(scratch, f"runs_{r}_{kind}_{spec.replace('/', '_')}")
          wall, res = run_once(spec, workdir, cache)
          times[spec][kind].append(wall)
          results[spec] = res
          print(f"round {r} {spec:28s} {kind}: {wall:6.1f} s", flush=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)

  med = {c: {k: statistics.median(v) for k, v in t.items()} for c, t in times.items()}
  print(f"\nMedians over {args.rounds} rounds (wall time of the whole command, seconds).\n")
  print("| config | cold cache | warm cache | compile share | test acc | steps |")
  print("|---|---|---|---|---|---|")
  for spec in args.configs:
    cold, warm = med[spec]["cold"], med[spec]["warm"]
    res = results[spec]
    print(f"| {spec} | {cold:.1f} | {warm:.1f} | {1 - warm / cold:.0%} | "
          f"{res.get('test_accuracy', float('nan')):.3f} | {res.get('steps', '-')} |")
  pairs = [(c, c.replace(":hard", ":hard,full") if ":hard" in c else f"{c}:full")
           for c in args.configs if "crest/" in c and "full" not in c]
  pairs = [(c, f) for c, f in pairs if f in med]
  if pairs:
    print("\n| CREST config | CREST / full-data, warm | CREST / full-data, cold | test acc "
          "CREST - full |")
    print("|---|---|---|---|")
    for crest, full in pairs:
      diff = results[crest]["test_accuracy"] - results[full]["test_accuracy"]
      print(f"| {crest} | {med[crest]['warm'] / med[full]['warm']:.2f} | "
            f"{med[crest]['cold'] / med[full]['cold']:.2f} | {diff:+.3f} |")


if __name__ == "__main__":
  main()
