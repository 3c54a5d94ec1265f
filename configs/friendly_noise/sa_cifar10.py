"""Sleeper Agent (hidden-trigger backdoor) on CIFAR-10 / ResNet-18, with or without a defence.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022):
           friendly + random noise renders Sleeper Agent ineffective with only a slight drop in
           clean accuracy (per-attack ASR and accuracy values not verified); primary setting
           CIFAR-10 / ResNet-18. Spec: clip-poisoning.md sections 6-7.
Stages:    substitute ResNet-18 (40 epochs, lr 0.1 x0.1 at 14/24/35, SGD Nesterov 0.9, wd 5e-4,
           batch 128) -> Sleeper Agent (1% budget = 500 poisons of the adversarial class with the
           largest gradient norm, eps 16/255 (`eps8`: 8/255), 250 signed-Adam iterations, one
           restart, the substitute retrained from scratch every 50 iterations, 8x8 trigger) ->
           victim ResNet-18 from scratch (the same recipe, another seed; friendly noise
           generated at epoch 5, 30 iterations; random noise Bernoulli +-8/255), each its own
           run directory.
Chosen:    the trigger (a random 8x8 patch; the reference uses its trigger image), adversarial
           class 0 and source class 1, the signed-Adam step 0.025 pixels (the reference's 0.1 in
           normalised units x the mean CIFAR-10 std), the random-noise bound 8/255 (the
           reference code's; the paper's text mentions 16/255, unverified).
Command:   python -m experiments.main \
             --config=configs/friendly_noise/sa_cifar10.py:friendly_random \
             --config.data.data_dir=/path/to/tfds   (sets the data_dir of all three stages)
Variants:  a defence none (default), random, friendly or friendly_random; trial0..trial9 (the
           seed of the poisons, trigger and restarts); seed0..seed2 (the victim); eps8; smoke
           (cifar10_common.py's small CNN on 2% of the train split, 5 steps per stage, 3
           crafting iterations with one retraining).
Hardware:  one GPU (H100-class). Time: not measured (crafting retrains ResNet-18 four times).
Expected:  undefended backdoor_asr well above 0; friendly_random near 0 with test_accuracy a
           few points below none (paper claim; not measured in this repo).
Results:   not measured at this scale; the embedded runs are in docs/results/poisoning.md,
           the kernels' cost in docs/results/poisoning-speed.md.
Checked:   the smoke chain on generated data (cifar10_common.py): 59 s on one CPU core.
"""

from configs.friendly_noise import cifar10_common

ATTACK = dict(name="sleeper_agent", eps=16 / 255, budget=0.01, adversarial_class=0,
              source_class=1, iterations=250, restarts=1, retrain_every=50, pbatch=512,
              augment=True, lr=cifar10_common.REFERENCE_SIGN_LR, trigger="random",
              patch_size=8)


def get_config(arg=None):
  return cifar10_common.victim_config(ATTACK, arg, what="friendly_noise/sa_cifar10.py")


def get_sweep():
  return cifar10_common.sweep("configs/friendly_noise/sa_cifar10.py")
