"""CLIP (no defence) on poisoned `captioned_shapes`: the attacked baseline of issue 6.

Setup (configs/clip/common.py): 1,536 clean pairs (object-centred captions) + 32 targeted poisons (4 held-out target
images, 8 captions of a wrong class each) + 32 BadNet-backdoored pairs captioned 'circle'.
Command:   python -m experiments.main --config=configs/clip/shapes.py
           (override the attack with e.g. --config.poison.count=48)
Variants:  `smoke` (tiny, 2 epochs, for tests), default (25 epochs).
Hardware:  2 CPU cores. Time: 2.3 minutes measured on 2 shared cores (load 3-6).
Expected:  seed 0 measured: zero_shot_accuracy 0.73 (chance 0.17), linear_probe_accuracy 0.75,
           backdoor_asr 0.59, targeted_asr 0.75; at poison.count=96 backdoor_asr 0.90,
           zero_shot_accuracy 0.81 (the issue-6 table in WORKSPACE.md, 3 seeds there).
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.shapes_config("clip", arg, name="clip_shapes")
  config.contrastive.augment = False  # plain CLIP: no image or caption augmentation
  return config_lib.finalize(config)
