"""Issue 4's results tables: data-efficient training on embedded digits, run one after another.

  JAX_PLATFORMS=cpu python benchmarks/selection_table.py [--workdir=/tmp/selection_runs]
      [--seeds=0,1] [--only=budget,hard,augment,ordering,share]

Tables (markdown): (1) digits and (2) the harder digits task (16x16, 4 shifted+noised copies
of each train image, clean labels, wider CNN; configs/crest/common.py): full-data training
vs a random 20% subset per epoch, CRAIG and CREST at the same step budget (test accuracy, wall
time, steps, examples seen, selection time share); (2b, `hard10`) the hard task at the CREST
paper's 10% step budget (every seed; config token `b10`); (3) strong augmentation of full data vs an
FL coreset vs a random subset of the same size vs none; (4) proxy-norm ordering vs random
reshuffling; (5) CREST's share of wall time in selection and checks on digits and on
CIFAR-10-shaped synthetic input. Finished runs are reused (same config hash, same run dir);
per-run results go to <workdir>/selection_table.json.
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

from robustdata import runner  # noqa: E402  pylint: disable=g-import-not-at-top

BUDGET_ROWS = (("full data", "full"), ("random 20%", "random"), ("CRAIG 20%", "craig"),
               ("CREST 20%", "crest"), ("CREST 20%, τ = 0.3", "loose"))
AUGMENT_ROWS = (("no strong aug", "none"), ("strong aug: full data", "full_aug"),
                ("strong aug: random 30%", "random"), ("strong aug: coreset 30%", ""))
ORDER_ROWS = (("random reshuffling", "random"),
              ("random batches, ascending block norm", ""),
              ("random batches, descending block norm", "descending"),
              ("examples sorted ascending, then cut", "examples"),
              ("examples sorted descending, then cut", "descending,examples"))


def run_one(config, seed: int, workdir: str) -> dict:
  return runner.run_or_reuse(
      config, workdir, seed=seed,
      describe=lambda r: f"{config.name} seed {seed}: acc {r['test_accuracy']:.4f}")


def load(module: str, arg: str):
  return importlib.import_module(module).get_config(arg)


def _cell(values, fmt: str) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  if len(values) == 1:
    return fmt.format(values[0])
  return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values))}"


def table(rows: dict[str, list[dict]], reference: str) -> str:
  ref_time = np.mean([r["wall_time_s"] for r in rows[reference]])
  lines = ["| method | test acc | wall time (s) | x full time | steps | examples seen | "
           "selection time share |", "|---|---|---|---|---|---|---|"]
  for name, runs in rows.items():
    get = lambda k: [r.get(k) for r in runs]  # pylint: disable=cell-var-from-loop
    wall = np.mean(get("wall_time_s"))
    share = [r.get("selection_time_s", 0.0) / r["wall_time_s"] for r in runs]
    lines.append(f"| {name} | {_cell(get('test_accuracy'), '{:.3f}')} | "
                 f"{_cell(get('wall_time_s'), '{:.1f}')} | {wall / ref_time:.2f} | "
                 f"{runs[0]['steps']} | {np.mean(get('examples_seen')):,.0f} | "
                 f"{_cell(share, '{:.1%}')} |")
  return "\n".join(lines)


def cifar_shaped_crest():
  """CREST's digits config on CIFAR-10-shaped synthetic input (32x32x3, N = 5,000, 200 steps)."""
  synth = load("configs.crest.digits", "").unlock()
  synth.name = "crest_cifar_shaped"
  synth.data.name = "cifar_shaped_synthetic"
  synth.data.num_train = 5000
  synth.data.num_test = 1000
  synth.data.upsample = 1
  synth.model.channels = (32, 64)
  synth.model.dense = 128
  synth.train.batch_size = 128
  synth.train.epochs = 50
  synth.policy.train_frac = 0.1          # T_e = 4 steps of 128 (200 steps)
  synth.policy.random_subset_size = 0.1  # 50 per class, as rho = 1% on 50k CIFAR-10
  synth.policy.min_train_size = 4000
  return synth.lock()


def crest_share(seed: int, workdir: str, *, cifar_shaped: bool = True) -> tuple[dict, str]:
  """CREST runs on digits (and CIFAR-shaped input) and a markdown table of the share of their
  wall time in selection, QUAD and checks (also printed by benchmarks/selection.py)."""
  runs = {"digits": [run_one(load("configs.crest.digits", ""), seed, workdir)]}
  if cifar_shaped:
    runs["cifar_shaped"] = [run_one(cifar_shaped_crest(), seed, workdir)]
  names = {"digits": "digits 8x8x1, N=1,258", "cifar_shaped": "CIFAR-shaped 32x32x3, N=5,000"}
  lines = ["| input | steps | wall time (s) | selection + checks (s) | share | select / QUAD / "
           "check (s) | selections | checks (triggered) |", "|---|---|---|---|---|---|---|---|"]
  for key, (r,) in runs.items():
    lines.append(f"| {names[key]} | {r['steps']} | {r['wall_time_s']:.1f} | "
                 f"{r['selection_time_s']:.1f} | {r['selection_time_s'] / r['wall_time_s']:.1%}"
                 f" | {r.get('crest_select_time_s', 0):.1f} / {r.get('crest_quad_time_s', 0):.1f}"
                 f" / {r.get('crest_check_time_s', 0):.1f} | {r['crest_selections']} | "
                 f"{r['crest_checks']} ({r['crest_check_triggers']}) |")
  title = "### CREST time in selection and checks (target < 15%)"
  return runs, f"\n{title}\n\n" + "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default="/tmp/selection_runs")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--only", default="budget,hard,hard10,augment,ordering,share")
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  only = set(args.only.split(","))
  out: dict[str, dict] = {}
  t_start = time.time()

  for task in [t for t in ("budget", "hard", "hard10") if t in only]:
    rows = {}
    for name, method in BUDGET_ROWS:
      if task == "hard10":
        if method == "loose":
          continue
        name = name.replace("20%", "10%")
      module = "configs.craig.digits" if method == "craig" else "configs.crest.digits"
      arg = ",".join(filter(None, ["" if task == "budget" else "hard",
                                   "" if method in ("crest", "craig") else method,
                                   "b10" if task == "hard10" else ""]))
      task_seeds = seeds[:1] if task == "hard" else seeds
      rows[name] = [run_one(load(module, arg), s, args.workdir) for s in task_seeds]
    out[task] = rows
    title = ("digits" if task == "budget" else
             "hard digits (6,290 train: 16x16, 4 shifted + noised copies; wider CNN)")
    budget = "10%" if task == "hard10" else "20%"
    print(f"\n### {title}: {budget} step budget\n\n{table(rows, 'full data')}\n", flush=True)

  if "augment" in only:
    rows = {name: [run_one(load("configs.augment_coresets.digits", arg), s, args.workdir)
                   for s in seeds] for name, arg in AUGMENT_ROWS}
    out["augment"] = rows
    print(f"\n### strong augmentation (digits, 539 train)\n\n{table(rows, 'no strong aug')}\n",
          flush=True)

  if "ordering" in only:
    rows = {name: [run_one(load("configs.ordering.digits", arg), s, args.workdir)
                   for s in seeds] for name, arg in ORDER_ROWS}
    out["ordering"] = rows
    print(f"\n### ordering (digits, constant lr, 15 epochs)\n\n"
          f"{table(rows, 'random reshuffling')}\n", flush=True)

  if "share" in only:
    out["share"], text = crest_share(seeds[0], args.workdir)
    print(text, flush=True)

  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "selection_table.json"), "w") as f:
    json.dump(out, f, indent=1, default=float)
  print(f"total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
  main()
