"""Campaign: the poisoning-robust CLIP tables of docs/results/clip-poisoning.md. CLIP, RoCLIP,
SafeCLIP and CleanCLIP on poisoned `captioned_shapes` (configs/<method>/shapes.py) with
`poison.count` poisons per attack, seeds 0, 1, 2. CleanCLIP fine-tunes the finished CLIP run
of its seed and count in runs/clip_table (WORKDIR; 30 epochs on 768 clean pairs), so the
sweep runs one point at a time (no --jobs) in that workdir.

Command:   python -m experiments.sweep --config=configs/campaigns/clip.py --workdir=runs/clip_table
           (variant tokens: poison counts, e.g. `:c16`; default c32,c96), then the
           `python -m experiments.report runs/clip_table --sweep=...` command of
           docs/results/clip-poisoning.md prints the table.
Hardware:  2 CPU cores, each run pinned to one (`taskset -c 0`). Time: 2-4 minutes a run.
Expected:  at 32 poisons per attack, CLIP backdoor_asr 0.537 ± 0.042, CleanCLIP 0.370 ± 0.108;
           zero_shot_accuracy 0.755 and 0.796 (seeds 0-2).
Results:   docs/results/clip-poisoning.md
"""

import os

from robustdata import config_lib, validation
from robustdata.sweep import apply_overrides

WORKDIR = "runs/clip_table"  # where the CLIP runs that CleanCLIP fine-tunes are
METHODS = ("clip", "roclip", "safeclip", "cleanclip")  # the table's row order
SEEDS = (0, 1, 2)


def _clip_dir(seed: int, count: int) -> str:
  config = apply_overrides(validation.load_config_file("configs/clip/shapes.py"),
                           {"seed": seed, "poison.count": count})
  return os.path.join(WORKDIR, config_lib.run_id(config_lib.resolve(config)))


def get_sweep(arg=None):
  """For each count ('c32,c96' without arg), seed and method: one run."""
  tokens = arg.split(",") if arg else ["c32", "c96"]
  if not all(t[:1] == "c" and t[1:].isdigit() for t in tokens):
    raise ValueError(f"variant {arg!r}: expected poison counts such as 'c16' or 'c32,c96'")
  cleanclip = validation.load_config_file("configs/cleanclip/shapes.py")
  points = []
  for count in (int(t[1:]) for t in tokens):
    for seed in SEEDS:
      for method in METHODS:
        point = {"config": f"configs/{method}/shapes.py", "seed": seed, "poison.count": count}
        if method == "cleanclip":  # fine-tune the CLIP run: only the fine-tuning epochs
          point.update({
              "contrastive.pretrained_checkpoint": _clip_dir(seed, count),
              "train.epochs": cleanclip.train.epochs - cleanclip.contrastive.pretrain_epochs,
              "contrastive.pretrain_epochs": 0})
        points.append(point)
  return points
