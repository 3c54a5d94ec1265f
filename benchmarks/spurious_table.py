"""Issue 5's results table: ERM, up-sampling, GroupDRO, JTT, DFR and PDE on spuco_digits, and
ERM vs PDE on the PDE paper's synthetic data, 3 seeds each, run one after another.

  JAX_PLATFORMS=cpu python benchmarks/spurious_table.py [--workdir=/tmp/spurious_runs]
      [--seeds=0,1,2] [--only=spuco|synthetic]

Prints a markdown table (mean ± std over seeds) of test worst-group and average accuracy,
wall time, examples seen (gradient computations) and, on the synthetic data, the max-filter
alignment with the core / spurious directions; writes the per-run numbers to
<workdir>/spurious_table.json. Finished runs are reused (same config hash, same run dir).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from robustdata import runner  # pylint: disable=g-import-not-at-top

SPUCO = ("erm", "upsample", "groupdro", "jtt", "dfr", "pde")
SYNTHETIC = ("erm", "pde")
KEYS = ("worst_group_accuracy", "average_accuracy", "wall_time_s", "examples_seen",
        "core_alignment", "spurious_alignment")


def run_one(module: str, seed: int, workdir: str) -> dict:
  return runner.run_or_reuse(
      importlib.import_module(module).get_config(), workdir, seed=seed,
      describe=lambda r: f"{module} seed {seed}: worst-group {r['worst_group_accuracy']:.3f}")


def _cell(values, fmt: str) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values))}"


def table(rows: dict[str, list[dict]], *, reference: str) -> str:
  """Markdown rows: method, worst-group, average, wall time, examples seen (x reference)."""
  ref_seen = np.mean([r["examples_seen"] for r in rows[reference]])
  lines = ["| method | worst-group acc | average acc | wall time (s) | examples seen "
           f"(x {reference}) | core / spurious alignment |",
           "|---|---|---|---|---|---|"]
  for name, runs in rows.items():
    get = lambda k: [r.get(k) for r in runs]  # pylint: disable=cell-var-from-loop
    seen = np.mean(get("examples_seen"))
    align = "-"
    if runs[0].get("core_alignment") is not None:
      align = f"{_cell(get('core_alignment'), '{:.2f}')} / {_cell(get('spurious_alignment'), '{:.2f}')}"
    lines.append(f"| {name} | {_cell(get('worst_group_accuracy'), '{:.3f}')} | "
                 f"{_cell(get('average_accuracy'), '{:.3f}')} | {_cell(get('wall_time_s'), '{:.1f}')}"
                 f" | {seen:,.0f} ({seen / ref_seen:.2f}) | {align} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default="/tmp/spurious_runs")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--only", choices=("spuco", "synthetic"), default=None)
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  os.makedirs(args.workdir, exist_ok=True)
  t0 = time.time()
  out: dict[str, dict[str, list[dict]]] = {}
  if args.only in (None, "spuco"):
    out["spuco_digits"] = {m: [run_one(f"configs.spuco.{m}_digits", s, args.workdir)
                               for s in seeds] for m in SPUCO}
  if args.only in (None, "synthetic"):
    out["pde_synthetic"] = {m: [run_one(f"configs.pde.synthetic_{m}", s, args.workdir)
                                for s in seeds] for m in SYNTHETIC}
  with open(os.path.join(args.workdir, "spurious_table.json"), "w") as f:
    json.dump({d: {m: [{k: r.get(k) for k in KEYS + ("seed", "config_hash", "test_accuracy",
                                                      "erm_worst_group_accuracy")}
                       for r in runs] for m, runs in rows.items()} for d, rows in out.items()},
              f, indent=1)
  for dataset, rows in out.items():
    reference = "groupdro" if "groupdro" in rows else "erm"
    print(f"\n### {dataset} ({len(seeds)} seeds, mean ± std; test split)\n")
    print(table(rows, reference=reference))
  print(f"\ntotal wall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
  main()
