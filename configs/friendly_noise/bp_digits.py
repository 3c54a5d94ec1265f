"""Bullseye Polytope on the embedded digits (16x16), victim trained from scratch, with or without a defence.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022):
           the attack is rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> Bullseye Polytope (1200 Adam iterations, mean mode, one substitute) -> victim CNN from scratch (20 epochs, another
           seed), each its own run directory; a second defence reuses the first two.
Command:   python -m experiments.main --config=configs/friendly_noise/bp_digits.py:friendly_random
Variants:  a defence none (default), random, friendly, friendly_random or dp; trial0..trial9
           (the target); seed0..seed2 (the victim); smoke (a minute on a laptop CPU).
Hardware:  2 CPU cores. Time: ~1 minute per victim, crafting ~1 minute once per trial (smoke: under a minute).
Expected:  see the results file: undefended targeted_asr against each defence.
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="bullseye", eps=16 / 255, budget=0.04, adversarial_class=0, iterations=1200)


def get_config(arg=None):
  return common.victim_config(ATTACK, "digits", arg, transfer=True, what="friendly_noise/bp_digits.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/bp_digits.py")
