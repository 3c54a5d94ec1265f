"""Hidden Trigger Backdoor (feature collision towards patched source images) in the transfer
setting (frozen extractor, new last layer), on the embedded captioned shapes as a 16-class task
(24x24 RGB).

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Stages:    substitute CNN (20 epochs) -> Hidden Trigger Backdoor (up to 5000 steps at the CIFAR
           budget eps = 16/255, 4% of the train split: 160 poisons of class 0, each paired with a
           patched source image) -> victim: new last layer on the frozen extractor (10 epochs)
           (each stage its own run directory; other defences reuse the first two).
Trigger:   a 6x6 checkerboard at a fixed place (the reference's), the share of the image of
           configs/friendly_noise/sa_shapes.py. Target class 0; the source class is the class of
           trial k's target image (common.target_index), as in the benchmark. Step size 0.01
           (the reference's 0.001 is for ImageNet-scale features; chosen, as on the digits).
Command:   python -m experiments.main --config=configs/friendly_noise/htb_shapes.py:none,trial0
Variants:  a defence or `clean` (no poisons applied), trial0..trial9 (the target
           image, hence the source class, and the crafting seed), seed0..seed2, smoke (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/htb_shapes.py \
             --workdir=runs/fn    (3 trials x 3 victim seeds x the control and 6 defences)
Hardware:  2 CPU cores.
Time:      crafting (5,000 steps) 5-8 minutes on one core, 27 under load 4 (300 steps give about
           the same backdoor); a victim ~20 s undefended, ~65 s with Friendly Noise, ~90 s with
           DP-SGD.
Expected:  backdoor_asr over 3 trials x 3 seeds: 0.86 undefended (0.68-0.97 per trial) against
           0.00 for the clean control, at 0.825 vs 0.833 clean accuracy; random 0.60, friendly
           0.74, friendly + random 0.70 (at 0.687 accuracy), DP-SGD 0.76, EPIC 0.91: in the
           transfer setting no defence stops it.
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common

ATTACK = dict(name="hidden_trigger", eps=16 / 255, budget=0.04, adversarial_class=0,
              trigger="checkerboard", patch_size=6, iterations=5000, lr=0.01)


def get_config(arg=None):
  return common.victim_config(ATTACK, "shapes", arg, transfer=True,
                              what="friendly_noise/htb_shapes.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/htb_shapes.py", trials=3, seeds=3,
                      defences=(common.CONTROL, *common.DEFENCES))
