"""Sleeper Agent (hidden-trigger backdoor by gradient matching) against a victim trained from
scratch, on the embedded captioned shapes as a 16-class task (24x24 RGB).

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> Sleeper Agent (250 signed-Adam iterations at the CIFAR
           budget eps = 16/255, 4% of the train split: 160 poisons of class 0 chosen by gradient
           norm, the substitute retrained from scratch every 50 iterations, the reference's
           schedule) -> victim CNN from scratch (20 epochs, another seed).
Trigger:   a 6x6 checkerboard stamped at a random place: the reference's 8x8 patch on 32x32
           images covers the same 6.25% of the image. Source class 1, target class 0.
Command:   python -m experiments.main --config=configs/friendly_noise/sa_shapes.py:none,trial0
Variants:  a defence or `clean` (no poisons applied), trial0..trial9 (the crafting seed: the
           trigger's places and the restarts), seed0..seed2, smoke (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/sa_shapes.py \
             --workdir=runs/fn    (3 trials x 3 victim seeds x the control and 6 defences)
Hardware:  2 CPU cores.
Time:      ~3.5 minutes of crafting per trial; a victim ~30 s (~65 s with Friendly Noise).
Expected:  backdoor_asr 0.44 undefended (0.32-0.60 per victim) against 0.01 for the clean
           control; friendly + random 0.08 at 8 points less clean accuracy (0.82 -> 0.74).
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="sleeper_agent", eps=16 / 255, budget=0.04, adversarial_class=0,
              source_class=1, iterations=250, restarts=1, retrain_every=50, pbatch=64,
              augment=False, trigger="checkerboard", patch_size=6)


def get_config(arg=None):
  return common.victim_config(ATTACK, "shapes", arg, what="friendly_noise/sa_shapes.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/sa_shapes.py", trials=3, seeds=3,
                      defences=(common.CONTROL, *common.DEFENCES))
