"""Coresets for data-efficient augmentation (Liu & Mirzasoleiman, NeurIPS'22; spec §3) on a
small embedded digits split (30% train = 539 examples, where augmentation matters).

Every R = 5 epochs an FL coreset of 30% of train on un-augmented proxies; each epoch trains on
M = all train (weight 1) plus A = the coreset strongly augmented (RandAugment, 2 ops at
magnitude 0.3, redrawn each epoch; robustdata/data/strong_augment.py).
Variants (comma-separated): `random` (A = a random subset of the same size), `full_aug`
(A = all train: full-data strong augmentation), `none` (no strong augmentation), `smoke`.

Command:   python -m experiments.main --config=configs/augment_coresets/digits.py[:random]
Hardware:  2 CPU cores. Time: ~30-60 s each.
Expected:  seeds 0, 1: test_accuracy 0.985 (coreset), 0.982 (random), 0.989 (full_aug),
           0.978 (none): the coreset recovers most of full augmentation's gain with 360 instead
           of 510 steps (none: 270).
Results:   docs/results/data-efficiency.md (coresets for strong augmentation)
"""

from configs.crest import common
from robustdata import config_lib

VARIANTS = ("random", "full_aug", "none")


def get_config(arg=None):
  tokens = common.parse(arg, VARIANTS + ("smoke",), "augment_coresets/digits",
                        exclusive=(VARIANTS,))
  chosen = tokens & set(VARIANTS)
  variant = chosen.pop() if chosen else "coreset"
  config = common.digits(f"augment_{variant}_digits", smoke="smoke" in tokens)
  config.data.val_fraction = 0.2
  config.data.test_fraction = 0.5   # 539 train examples
  config.train.batch_size = 64
  if variant == "none":
    config.policy.name = "full"
    return config_lib.finalize(config)
  config.policy.name = "augment_coreset"
  config.policy.fraction = 0.3
  config.policy.refresh_every = 5
  config.policy.selection = {"coreset": "coreset", "random": "random", "full_aug": "full"}[variant]
  config.policy.main = "full"
  config.policy.augment_weights = False
  config.policy.kernel = "exp"
  config.policy.num_ops = 2
  config.policy.magnitude = 0.3
  return config_lib.finalize(config)
