"""Gradient matching (Witches' Brew) against a victim that fine-tunes the substitute on the
poisoned data, on the embedded captioned shapes (16 classes, 24x24 RGB).

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Why:       from scratch the poisons crafted on the substitute do not act on this set
           (gm_shapes.py); fine-tuning the substitute itself, they flip the target within one
           epoch (benchmarks/poisoning_diagnose.py), so this is where the defence can be measured.
Stages:    substitute CNN (20 epochs) -> gradient matching (eps 16/255, 4%: 160 poisons of
           class 0; shared with gm_shapes.py) -> the substitute fine-tuned for 5 epochs on the
           poisoned data, the defence from its first epoch.
Command:   python -m experiments.main \
             --config=configs/friendly_noise/gm_shapes_finetune.py:friendly_random
Variants:  a defence, trial0..trial9, seed0..seed2, smoke (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/gm_shapes_finetune.py \
             --workdir=runs/fn
Hardware:  2 CPU cores.
Time:      ~5 minutes of crafting per trial, 1-2 minutes per victim (Friendly Noise: ~3).
Expected:  targeted_asr 0.8 over trial0..trial4 undefended (4 of 5 targets), unchanged by random
           noise and Friendly Noise; DP-SGD (epsilon 8) 0.2; clean accuracy 0.84 (friendly 0.79).
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common
from configs.friendly_noise.gm_shapes import ATTACK


def get_config(arg=None):
  return common.victim_config(ATTACK, "shapes", arg, fine_tune=True,
                              what="friendly_noise/gm_shapes_finetune.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/gm_shapes_finetune.py", trials=5)
