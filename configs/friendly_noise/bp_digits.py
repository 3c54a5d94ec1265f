"""Bullseye Polytope in the benchmark's transfer setting (the substitute's feature
extractor frozen, a new last layer trained on the poisoned data), on the embedded digits at 16x16.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> Bullseye Polytope (1200 Adam iterations, mean mode, one
           substitute; `ensemble3`: against it and two more seeds, each substitute its own run)
           -> victim: new last layer on the frozen extractor (10 epochs)
           (each stage its own run directory; other defences reuse the first two).
Budgets:   eps = 0.3 and 4% of the train split, the defence scaled to eps (common.py: why).
Command:   python -m experiments.main \
             --config=configs/friendly_noise/bp_digits.py:friendly_random
Variants:  a defence (none, random, friendly, friendly_random, dp, epic), trial0..trial9,
           seed0..seed2, ensemble3, smoke (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/bp_digits.py \
             --workdir=runs/fn
Hardware:  2 CPU cores.
Time:      ~1 minute of crafting per trial, ~20 s per victim (smoke: under a minute).
Expected:  targeted_asr 0.43 without a defence (10 targets x 3 seeds); friendly 0.50, friendly
           + random 0.43, random 0.20, DP-SGD 0.10, EPIC 0.37; clean accuracy 0.973-0.991.
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="bullseye", eps=0.3, budget=0.04, adversarial_class=0, iterations=1200)


def get_config(arg=None):
  return common.victim_config(ATTACK, "digits", arg, transfer=True,
                              what="friendly_noise/bp_digits.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/bp_digits.py", seeds=3)
