"""The per-epoch cost of each CLIP defence, read from finished contrastive runs' metrics.jsonl:
the CLIP step's examples per second, and each phase's epoch time against a plain CLIP epoch
(the baseline: the 'clip' epochs of the CLIP run given first, measured under the same pinning).

  python benchmarks/clip_defence_cost.py runs/clip_scenes-<hash> runs/roclip_scenes-<hash> ...

Run directories or globs, as `experiments.report` reads them (`report.find_runs`); unfinished
runs are listed and skipped.

An epoch's time is the sum of its train records' windows (steps x batch / examples_per_sec):
a window spans everything between two log lines, so the work between epochs (RoCLIP's pool
pre-fill, SafeCLIP's scoring and GMM split, the filter's scoring) lands in the next epoch's
first window. The scoring passes are also timed alone (`score_time_s` of the 'safeclip_split'
and 'filter' records). RoCLIP's nearest-caption diagnosis after a matching epoch is
instrumentation, not the defence: its `diagnosis_time_s` is subtracted from the epoch that
carries it. Checkpoint saves and evaluation fall inside the windows of every method alike.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ml_collections  # noqa: E402

from robustdata import report  # noqa: E402
from robustdata.contrastive import config as ccfg  # noqa: E402


def epoch_costs(run: report.Run) -> dict:
  """{method, phases: {phase: [epoch seconds]}, score: [seconds], diagnosis: [seconds],
  examples_per_sec: [train windows' rates]} of one finished run."""
  config = ml_collections.ConfigDict(run.config)
  bsz = config.train.batch_size
  seconds, score, diagnosis, rates = collections.Counter(), [], {}, []
  last_step = 0
  with open(os.path.join(run.path, "metrics.jsonl")) as f:
    for line in f:
      rec = json.loads(line)
      split = rec.get("split")
      if split == "train":
        dt = (rec["step"] - last_step) * bsz / rec["examples_per_sec"]
        seconds[rec["epoch"]] += dt
        last_step = rec["step"]
        if ccfg.epoch_phase(config, rec["epoch"]) == "clip":
          rates.append(rec["examples_per_sec"])
      elif split in ("safeclip_split", "filter"):
        score.append(rec["score_time_s"])
      elif split == "roclip_match":  # written at the end of its epoch: lands in the next one
        diagnosis[rec["epoch"] + 1] = rec["diagnosis_time_s"]
  phases = collections.defaultdict(list)
  for epoch in sorted(seconds):
    phases[ccfg.epoch_phase(config, epoch)].append(seconds[epoch] - diagnosis.get(epoch, 0.0))
  return {"method": config.method, "phases": dict(phases), "score": score,
          "diagnosis": list(diagnosis.values()), "examples_per_sec": rates}


def typical_epoch(phase: str, secs: list[float]) -> float:
  """The median epoch of a phase; a run's first epoch carries compilation, so it is dropped
  from the 'clip' phase (every run's first) where the phase has others."""
  return statistics.median(secs[1:] if phase == "clip" and len(secs) > 1 else secs)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("runs", nargs="+", help="run directories; the first is the plain CLIP baseline")
  args = p.parse_args()
  runs, unfinished = report.find_runs(args.runs)
  for path in unfinished:
    print(f"skipped (unfinished, no results.json): {path}")
  costs = [(run.path, epoch_costs(run)) for run in runs]
  base = costs[0][1]
  base_epoch = typical_epoch("clip", base["phases"]["clip"])
  print(f"baseline: {costs[0][0]}: plain CLIP epoch {base_epoch:.1f} s (median over epochs "
        f"after the first), CLIP step {statistics.median(base['examples_per_sec']):.0f} "
        "examples/s (median window)\n")
  print("| run | method | phase | epochs | epoch s (median) | x CLIP epoch | extra per epoch |")
  print("|---|---|---|---|---|---|---|")
  for run, c in costs:
    for phase, secs in c["phases"].items():
      med = typical_epoch(phase, secs)
      print(f"| {os.path.basename(run.rstrip('/'))} | {c['method']} | {phase} | {len(secs)} | "
            f"{med:.1f} | {med / base_epoch:.2f} | {(med - base_epoch) / base_epoch:+.0%} |")
  for run, c in costs:
    if c["score"]:
      s = statistics.median(c["score"])
      print(f"\n{os.path.basename(run.rstrip('/'))}: scoring pass (every pair, alone) "
            f"{s:.1f} s median over {len(c['score'])} = {s / base_epoch:.1%} of a CLIP epoch")
    if c["diagnosis"]:
      d = statistics.median(c["diagnosis"])
      print(f"{os.path.basename(run.rstrip('/'))}: nearest-caption diagnosis (instrumentation, "
            f"subtracted) {d:.1f} s median = {d / base_epoch:.1%} of a CLIP epoch")


if __name__ == "__main__":
  main()
