"""CLIP (no defence) on poisoned `captioned_shapes`: the attacked baseline, the CLIP rows of
docs/results/clip-poisoning.md.

Setup (configs/clip/common.py): 1,536 clean pairs (object-centred captions) + 32 targeted
poisons (4 held-out target images, 8 captions of a wrong class each) + 32 BadNet-backdoored
pairs captioned 'circle'.
Command:   python -m experiments.main --config=configs/clip/shapes.py
           (override the attack with e.g. --config.poison.count=16)
Variants:  `smoke` (tiny, 2 epochs, for tests), default (25 epochs).
Hardware:  2 CPU cores. Time: ~2 minutes (2.3 minutes on 2 shared cores, load 3-6).
Expected:  seeds 0-2: zero_shot_accuracy 0.755 (chance 0.17), linear_probe_accuracy 0.778,
           targeted_asr 0.750, backdoor_asr 0.537; at poison.count=96 zero-shot 0.814,
           targeted 1.000, backdoor 0.943; at poison.count=16 zero-shot 0.731, targeted 0.667,
           backdoor 0.321.
Results:   docs/results/clip-poisoning.md
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.shapes_config("clip", arg, name="clip_shapes")
  config.contrastive.augment = False  # plain CLIP: no image or caption augmentation
  return config_lib.finalize(config)
