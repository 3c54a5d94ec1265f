"""Bullseye Polytope on CIFAR-10 / ResNet-18, with or without a defence; not run here.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022):
           friendly + random noise renders Bullseye Polytope ineffective with only a slight drop
           in clean accuracy (per-attack ASR and accuracy values not verified); primary setting
           CIFAR-10 / ResNet-18. Spec: clip-poisoning.md sections 6-7.
Stages:    substitute ResNet-18 (40 epochs, lr 0.1 x0.1 at 14/24/35, SGD Nesterov 0.9, wd 5e-4,
           batch 128) -> Bullseye Polytope (mean mode on the substitute's penultimate features,
           1% budget = 500 poisons, eps 16/255 (`eps8`: the benchmark's 8/255), 1200 Adam
           iterations at lr 0.04) -> victim ResNet-18 from scratch (the same recipe, another
           seed; friendly noise generated at epoch 5, 30 iterations; random noise Bernoulli
           +-8/255), each its own run directory.
Chosen:    the target (cifar10_common.TARGETS[k], not the benchmark's setup pickles),
           adversarial class 0, one substitute by default (the official attack uses an
           ensemble of networks, settings unverified; `ensemble3` crafts against three ResNet-18
           seeds), the random-noise bound 8/255 (the reference code's; the paper's text
           mentions 16/255, unverified).
Command:   python -m experiments.main \
             --config=configs/friendly_noise/bp_cifar10.py:friendly_random \
             --config.data.data_dir=/path/to/tfds   (sets the data_dir of all three stages)
Variants:  a defence none (default), random, friendly or friendly_random; trial0..trial9 (the
           target); seed0..seed2 (the victim); eps8; ensemble3; smoke (cifar10_common.py's
           small CNN on 2% of the train split, 5 steps per stage, 3 crafting iterations).
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  undefended targeted_asr above 0 (the benchmark README reports 3% for BP from scratch
           at eps 8/255); friendly_random near 0 with test_accuracy a few points below none
           (paper claim; not measured in this repo).
Results:   not measured at this scale; the embedded runs are in docs/results/poisoning.md,
           the kernels' cost in docs/results/poisoning-speed.md.
Checked:   the smoke chain on generated data (cifar10_common.py): 40 s on one CPU core.
"""

from configs.friendly_noise import cifar10_common

ATTACK = dict(name="bullseye", eps=16 / 255, budget=0.01, adversarial_class=0, iterations=1200)


def get_config(arg=None):
  return cifar10_common.victim_config(ATTACK, arg, what="friendly_noise/bp_cifar10.py")


def get_sweep():
  return cifar10_common.sweep("configs/friendly_noise/bp_cifar10.py")
