"""Ordering for non-replacement SGD (Xu & Mirzasoleiman, arXiv 2306.15848; spec §7) on digits:
each epoch is ordered by the start-of-epoch gradient-proxy norm ||softmax - onehot|| and cut into
consecutive mini-batches.

Variants (comma-separated): (none) ascending, `descending`, `random` (random reshuffling, the
baseline), `smoke`. A constant learning rate (the paper's bound differs by step-size regime).

Command:   python -m experiments.main --config=configs/ordering/digits.py[:descending]
Hardware:  2 CPU cores. Time: ~30 s.
Expected:  test_accuracy within ~1 point of random reshuffling (>= 0.95); measured numbers in
           WORKSPACE.md (issue 4 section).
"""

from configs.crest import common


def get_config(arg=None):
  tokens = common.parse(arg, ("descending", "random", "smoke"), "ordering/digits")
  if {"descending", "random"} <= tokens:
    raise ValueError("choose one of 'descending' or 'random'")
  variant = "random" if "random" in tokens else (
      "descending" if "descending" in tokens else "ascending")
  config = common.digits(f"ordering_{variant}_digits", smoke="smoke" in tokens)
  config.optim.schedule = "constant"
  config.train.epochs = 15 if "smoke" not in tokens else 2
  if variant == "random":
    config.policy.name = "full"
  else:
    config.policy.name = "ordering"
    config.policy.ascending = variant == "ascending"
  return config.lock()
