"""Campaign: the DP-SGD tables of docs/results/privacy.md. The sweep of
configs/dpsgd/digits.py (sgd, clip_only, noise_only and dp_sgd at epsilon 1, 3, 8; dp_sgd at
epsilon 3 with 50-95% magnitude pruning) for seeds 0, 1, 2, seed by seed, so a partial
campaign already has whole tables.

Command:   python -m experiments.sweep --config=configs/campaigns/dpsgd.py \
               --workdir=runs/dpsgd_table
           then the two `python -m experiments.report runs/dpsgd_table --sweep=...` commands of
           docs/results/privacy.md print the accuracy and pruning tables.
Hardware:  2 shared CPU cores. Time: ~15 minutes for the 36 runs, one after another.
Expected:  test_accuracy sgd 0.984, clip_only 0.882, dp_sgd 0.631 / 0.877 / 0.882 at epsilon
           1 / 3 / 8 (seeds 0-2, commit 53724ff).
Results:   docs/results/privacy.md
"""

from configs.dpsgd import common

SEEDS = (0, 1, 2)


def get_sweep():
  """Seed-major: every point of configs/dpsgd/digits.py's sweep, then the next seed."""
  return [{"config": "configs/dpsgd/digits.py", "seed": s, **overrides}
          for s in SEEDS for overrides in common.sweep()]
