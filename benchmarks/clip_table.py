"""Issue-6 campaign: CLIP, RoCLIP, SafeCLIP and CleanCLIP on poisoned `captioned_shapes` at two
poison counts; prints zero-shot and linear-probe accuracy, targeted and backdoor ASR.

  python benchmarks/clip_table.py [--workdir /tmp/clip_runs] [--seeds 0] [--counts 32 96]
  python benchmarks/clip_table.py --table-only   # the table of the finished runs in --workdir
  python benchmarks/clip_table.py --methods roclip safeclip   # a subset of the methods

Each run is the `configs/<method>/shapes.py` default with `poison.count` (per attack: the
targeted attack's poisons are split over 4 held-out target images, the backdoor's are BadNet
copies captioned 'circle') and `seed` overridden. CleanCLIP fine-tunes the CLIP run of the
same seed and count (30 epochs on 768 clean pairs), as the reference cleans a poisoned model.
Runs are sequential and resumable: a finished run directory is re-evaluated, not retrained.
With `--methods` that leave clip out, CleanCLIP fine-tunes the CLIP run of its seed and count
already in --workdir (the directory CLIP would have; it must be finished).
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from robustdata import config_lib, runner  # noqa: E402

METHODS = ("clip", "roclip", "safeclip", "cleanclip")
COLUMNS = ("zero_shot_accuracy", "linear_probe_accuracy", "targeted_asr", "backdoor_asr")


def _config(method: str, *, seed: int, count: int, clip_dir: str | None):
  config = importlib.import_module(f"configs.{method}.shapes").get_config()
  with config.unlocked():
    config.seed = seed
    config.poison.count = count
    config.train.progress = "none"
    if method == "cleanclip":
      config.contrastive.pretrained_checkpoint = clip_dir
      config.train.epochs -= config.contrastive.pretrain_epochs  # the fine-tuning epochs
      config.contrastive.pretrain_epochs = 0
  return config


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default="/tmp/clip_runs")
  p.add_argument("--seeds", type=int, nargs="+", default=[0])
  p.add_argument("--counts", type=int, nargs="+", default=[32, 96])
  p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
  p.add_argument("--table-only", action="store_true", help="print the table of finished runs")
  args = p.parse_args()
  rows: dict[tuple[int, str], list[dict]] = {}
  start = time.time()
  if args.table_only:
    for path in sorted(glob.glob(os.path.join(args.workdir, "*", "results.json"))):
      with open(path) as f:
        res = json.load(f)
      count = res["poison"].get("backdoor", res["poison"].get("targeted", {})).get("poison_count", 0)
      rows.setdefault((count, res["method"]), []).append(res)
    rows = dict(sorted(rows.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1]))))
    args.counts = []
  for count in args.counts:
    for seed in args.seeds:
      clip_dir = None
      for method in args.methods:
        if method == "cleanclip" and clip_dir is None:  # clip not in --methods: its finished run
          clip_config = _config("clip", seed=seed, count=count, clip_dir=None)
          clip_dir = os.path.join(args.workdir, config_lib.run_id(clip_config))
        config = _config(method, seed=seed, count=count, clip_dir=clip_dir)
        run_dir, res = runner.run(config, args.workdir)
        if method == "clip":
          clip_dir = run_dir
        rows.setdefault((count, method), []).append(res)
        print(f"[{time.time() - start:6.0f}s] count={count} seed={seed} {method:9s} "
              + " ".join(f"{k}={res[k]:.3f}" for k in COLUMNS) + f" wall={res['wall_time_s']:.0f}s"
              + f" dir={run_dir}", flush=True)
  print(f"\npoisons per attack | method    | seeds | zero-shot | linear probe | targeted ASR | "
        "backdoor ASR | total poison ratio | wall s")
  print("---|---|---|---|---|---|---|---|---")
  for (count, method), results in rows.items():
    cells = []
    for k in COLUMNS:
      v = np.array([r[k] for r in results], float)
      cells.append(f"{v.mean():.3f}" + (f" ± {v.std():.3f}" if len(v) > 1 else ""))
    ratio = results[0]["poison_ratio"]
    wall = np.mean([r["wall_time_s"] for r in results])
    print(f"{count} | {method} | {len(results)} | " + " | ".join(cells)
          + f" | {ratio:.3f} | {wall:.0f}")
  print(f"\ncampaign wall time: {time.time() - start:.0f} s")


if __name__ == "__main__":
  main()
