"""Gradient matching (Witches' Brew) against a victim trained from scratch, on the embedded
captioned shapes as a 16-class task (24x24 RGB; the object at a random colour, size, place).

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> gradient matching (250 signed-Adam iterations at the
           CIFAR budget eps = 16/255, 4% of the train split: 160 poisons of class 0) -> victim
           CNN from scratch (20 epochs, another seed).
Command:   python -m experiments.main --config=configs/friendly_noise/gm_shapes.py:none,trial0
Diagnose:  python benchmarks/poisoning_diagnose.py \
             --config=configs/friendly_noise/gm_shapes.py:trial0 --workdir=<the same workdir>
Variants:  a defence or `clean` (no poisons applied), trial0..trial9, seed0..seed2, smoke
           (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/gm_shapes.py \
             --workdir=runs/fn    (10 targets x 3 victim seeds x the control and 6 defences)
Hardware:  2 CPU cores.
Time:      ~3-5 minutes of crafting per target; a victim ~40 s (~70 s with Friendly Noise).
Expected:  clean test accuracy 0.83; undefended, targets 2, 3, 4 and 9 (test images 539, 43,
           709, 978) flip to class 0 in most victims, the other six in none (ASR 0.33 over 30
           victims); clean victims of the same recipe predict none of the ten as class 0;
           friendly + random 0.20 at 0.75 accuracy.
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="gradient_matching", eps=16 / 255, budget=0.04, adversarial_class=0,
              iterations=250, restarts=1, pbatch=64, augment=False)


def get_config(arg=None):
  return common.victim_config(ATTACK, "shapes", arg, what="friendly_noise/gm_shapes.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/gm_shapes.py", trials=10, seeds=3,
                      defences=(common.CONTROL, *common.DEFENCES))
