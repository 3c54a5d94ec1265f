"""Gradient matching (Witches' Brew) against a victim trained from scratch, on the
embedded digits at 16x16.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> gradient matching (250 signed-Adam iterations, 2
           restarts) -> victim CNN from scratch (20 epochs, another seed)
           (each stage its own run directory; other defences reuse the first two).
Budgets:   eps = 0.3 and 4% of the train split, the defence scaled to eps (common.py: why).
Command:   python -m experiments.main \
             --config=configs/friendly_noise/gm_digits.py:friendly_random
Variants:  a defence, trial0..trial9, seed0..seed2, smoke (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/gm_digits.py \
             --workdir=runs/fn
Hardware:  2 CPU cores.
Time:      ~3 minutes of crafting per trial, ~30 s per victim (smoke: about a minute).
Expected:  targeted_asr 0.00 without a defence on digits (0 of 9 targets at eps 16/255 to
           0.25): the attack does not transfer to a victim trained from scratch here.
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="gradient_matching", eps=0.3, budget=0.04, adversarial_class=0,
              iterations=250, restarts=2, pbatch=64, augment=False)


def get_config(arg=None):
  return common.victim_config(ATTACK, "digits", arg, what="friendly_noise/gm_digits.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/gm_digits.py")
