"""Sleeper Agent (hidden-trigger backdoor by gradient matching) on the embedded digits (16x16), victim trained from scratch, with or without a defence.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022):
           the backdoor is rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> Sleeper Agent (250 iterations, substitute retrained every 50) -> victim CNN from scratch (20 epochs, another
           seed), each its own run directory; a second defence reuses the first two.
Command:   python -m experiments.main --config=configs/friendly_noise/sa_digits.py:friendly_random
Variants:  a defence none (default), random, friendly, friendly_random or dp; trial0..trial9
           (the target); seed0..seed2 (the victim); smoke (a minute on a laptop CPU).
Hardware:  2 CPU cores. Time: ~1 minute per victim, crafting ~5 minutes once per trial (smoke: under a minute).
Expected:  see the results file: undefended backdoor_asr against each defence.
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="sleeper_agent", eps=16 / 255, budget=0.04, adversarial_class=0, source_class=1,
              iterations=250, restarts=1, retrain_every=50, pbatch=64, augment=False,
              trigger="checkerboard", patch_size=4)


def get_config(arg=None):
  return common.victim_config(ATTACK, "digits", arg, what="friendly_noise/sa_digits.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/sa_digits.py")
