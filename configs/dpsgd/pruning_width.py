"""Does heavy pruning help DP-SGD once the model is large? (spec §7: the argument is about
dimension, so the gain should grow with the number of trained coordinates.) DP-SGD at epsilon 3
(delta 1e-5) on the embedded 8x8 digits with the study's CNN (configs/dpsgd/digits.py) at base
width k = `model.width` (channels k, 2k, dense 4k: k = 16 is that config's 13.7k-parameter CNN,
k = 64 has 0.2M and k = 256 3.3M parameters), at global magnitude sparsity 0-95%, pruned once
early (masks from the private weights after 2 epochs, then fixed) or iteratively (from epoch 4,
re-pruned every 4 epochs with the sparsity ramping to its target at epoch 16); plus SGD,
clip-only and noise-only at sparsity 0 per width, to see whether clipping still hurts more
than noise at that width.
Command:   python -m experiments.main --config=configs/dpsgd/pruning_width.py:w256,s90,iter
           (tokens: a width w16 / w64 / w256, a sparsity s0 / s50 / s80 / s90 / s95, a schedule
           once / iter, a mode sgd / clip_only / noise_only instead of dp_sgd, and smoke)
Sweep:     python -m experiments.sweep --config=configs/dpsgd/pruning_width.py --workdir=runs/pw
           python -m experiments.report 'runs/pw/dpsgd_prune_width*' --rows=model.width \
               --cols=privacy.prune_sparsity --metric=test_accuracy
Variants:  default = w16, s0 (DP-SGD without pruning); `smoke` (2 epochs).
Hardware:  2 CPU cores. Time: ~10-25 s per run at w16, 0.5-1 minute at w64, ~1 minute at
           w256 unpruned and 6-10 minutes pruned (masked convs form per-example gradients);
           the sweep (36 runs per seed) about an hour per seed.
Expected:  test_accuracy (seeds 0-2) unpruned 0.877 / 0.894 / 0.746 at w16 / w64 / w256; 80%
           pruned once 0.794 / 0.897 / 0.895: pruning helps at w256 (+0.15); the iterative
           schedule collapses at 80% and beyond. Tables in docs/results/privacy.md ("Pruning
           against width").
Results:   docs/results/privacy.md
"""

from configs.dpsgd import digits
from robustdata import config_lib, validation

WIDTHS = {"w16": 16, "w64": 64, "w256": 256}
SPARSITIES = {"s0": 0.0, "s50": 0.5, "s80": 0.8, "s90": 0.9, "s95": 0.95}
SCHEDULES = {  # (prune_start_epoch, prune_every_epochs)
    "once": (2, 0),   # one mask from the private weights after 2 epochs
    "iter": (4, 4),   # the digits config's schedule: epochs 4, 8, 12, 16, ramping
}
MODES = ("sgd", "clip_only", "noise_only")
SEEDS = (0, 1, 2)


def get_config(arg=None):
  tokens = validation.parse_variants(
      arg, (*WIDTHS, *SPARSITIES, *SCHEDULES, *MODES, "smoke"), "dpsgd/pruning_width",
      exclusive=(tuple(WIDTHS), tuple(SPARSITIES), tuple(SCHEDULES), MODES))
  pick = lambda table, default: next((t for t in tokens if t in table), default)
  width, sparsity = pick(WIDTHS, "w16"), pick(SPARSITIES, "s0")
  schedule, mode = pick(SCHEDULES, "iter"), pick(MODES, "dp_sgd")
  config = digits.get_config("smoke" if "smoke" in tokens else None)
  with config.unlocked():
    config.name = "dpsgd_prune_width" + ("_smoke" if "smoke" in tokens else "")
    config.model.width = WIDTHS[width]
    config.privacy.mode = mode
    config.privacy.prune_sparsity = SPARSITIES[sparsity]
    config.privacy.prune_start_epoch, config.privacy.prune_every_epochs = SCHEDULES[schedule]
  return config_lib.finalize(config)


def get_sweep():
  """Per seed and width: DP-SGD at every sparsity under both schedules (sparsity 0 once), and
  SGD, clip-only and noise-only unpruned."""
  points = []
  for seed in SEEDS:
    for width in WIDTHS.values():
      base = {"seed": seed, "model.width": width}
      points += [{**base, "privacy.mode": m} for m in MODES]
      points.append({**base, "privacy.prune_sparsity": 0.0})
      for start, every in SCHEDULES.values():
        for sparsity in (s for s in SPARSITIES.values() if s > 0):
          points.append({**base, "privacy.prune_sparsity": sparsity,
                         "privacy.prune_start_epoch": start,
                         "privacy.prune_every_epochs": every})
  return points
