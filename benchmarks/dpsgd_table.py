"""Issue 3's results table: SGD, clip-only, noise-only and DP-SGD at epsilon 1, 3, 8
(delta 1e-5) and DP-SGD at epsilon 3 with magnitude pruning, on the embedded digits, run one
after another (the sweep of configs/dpsgd/digits.py).

  JAX_PLATFORMS=cpu python benchmarks/dpsgd_table.py [--workdir=/tmp/dp_runs] [--seeds=0]

Prints two markdown tables (test accuracy mean ± std over seeds, the calibrated noise
multiplier, the epsilon spent, the effective dimension, mean wall time) and writes the per-run
numbers to <workdir>/dpsgd_table.json. Finished runs are reused (same config hash, same run
dir).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.dpsgd import digits  # pylint: disable=g-import-not-at-top
from robustdata import runner  # pylint: disable=g-import-not-at-top

EPSILONS = (1.0, 3.0, 8.0)
SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)


def run_one(overrides: dict, *, seed: int, workdir: str) -> dict:
  """Runs (or reuses) the digits config with dotted `overrides`."""
  config = digits.get_config()
  with config.unlocked():
    for dotted, value in overrides.items():
      section, field = dotted.split(".")
      config[section][field] = value
  return runner.run_or_reuse(
      config, workdir, seed=seed,
      describe=lambda r: (f"{overrides}: test accuracy {r['test_accuracy']:.3f}, "
                          f"epsilon {r.get('epsilon', 'inf')}"))


def _eps(results: list[dict]) -> str:
  eps = results[0].get("epsilon", "inf")
  return "∞" if eps == "inf" else f"{eps:.2f}"


def _acc(results: list[dict]) -> str:
  values = [r["test_accuracy"] for r in results]
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def _wall(results: list[dict]) -> str:
  return f"{np.mean([r['wall_time_s'] for r in results]):.0f} s"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--workdir", default="/tmp/dp_runs")
  parser.add_argument("--seeds", default="0")
  args = parser.parse_args()
  logging.getLogger("absl").setLevel(logging.ERROR)  # dp_accounting's RDP order warnings
  os.makedirs(args.workdir, exist_ok=True)
  t0 = time.time()
  seeds = [int(s) for s in args.seeds.split(",")]
  runs = {}
  for seed in seeds:  # seed-major, so a partial campaign already has whole tables
    for overrides in digits.get_sweep():
      key = json.dumps(overrides, sort_keys=True)
      runs.setdefault(key, []).append(run_one(overrides, seed=seed, workdir=args.workdir))
  total = time.time() - t0
  with open(os.path.join(args.workdir, "dpsgd_table.json"), "w") as f:
    json.dump(runs, f, indent=1, sort_keys=True)

  def get(**o):
    return runs[json.dumps({f"privacy.{k}": v for k, v in o.items()}, sort_keys=True)]

  print(f"\nSeeds {seeds}; all runs: {total:.0f} s (reused runs count 0).\n")
  print("| mode | " + " | ".join(f"ε = {e:g}" for e in EPSILONS) + " |")
  print("|---|" + "---|" * len(EPSILONS))
  for mode in ("sgd", "clip_only"):
    r = get(mode=mode)
    cell = f"{_acc(r)} (no noise, ε = {_eps(r)}, {_wall(r)})"
    print(f"| {mode} | " + " | ".join([cell] * len(EPSILONS)) + " |")
  for mode in ("noise_only", "dp_sgd"):
    cells = []
    for e in EPSILONS:
      r = get(mode=mode, target_epsilon=e)
      cells.append(f"{_acc(r)} (σ = {r[0]['noise_multiplier']:.2f}, ε = {_eps(r)}, "
                   f"{_wall(r)})")
    print(f"| {mode} | " + " | ".join(cells) + " |")
  print("\n| dp_sgd, ε = 3 | sparsity | effective dimension | test accuracy | ε | wall |")
  print("|---|---|---|---|---|---|")
  for s in SPARSITIES:
    r = (get(mode="dp_sgd", target_epsilon=3.0) if s == 0 else
         get(mode="dp_sgd", target_epsilon=3.0, prune_sparsity=s))
    print(f"| | {s:.0%} | {r[0]['effective_dimension']:,} / {r[0]['total_dimension']:,} | "
          f"{_acc(r)} | {_eps(r)} | {_wall(r)} |")


if __name__ == "__main__":
  main()
