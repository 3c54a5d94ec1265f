"""CLIP (no defence) on poisoned `captioned_scenes` at the papers' poison rates: the attacked
baseline of the clip_scenes table (issue 23).

Setup (configs/clip_scenes/common.py): 20,000 pairs of 24 classes at 32x32; per attack the
variant's rate of poisoned pairs: targeted (16 held-out targets, real captions of a random
other class) and a BadNet backdoor captioned 'star'. 10 epochs, batch 128.
Command:   python -m experiments.main --config=configs/clip_scenes/clip.py:r1,s0
           (sweep: python -m experiments.sweep --config=configs/clip_scenes/clip.py)
Variants:  r005 / r02 / r05 / r1 (0.05% / 0.2% / 0.5% / 1% per attack; default r1), t50 (the
           targeted attack alone, 50 captions per target), s0 / s1 / s2 (seed), e30 (30 epochs
           instead of 10), blend (the blended backdoor trigger instead of the BadNet patch),
           smoke (1,200 pairs, 2 epochs, under a minute).
Hardware:  2 CPU cores. Time: about 8 minutes on one core (one XLA thread); e30 about 40.
Expected:  r1, s0: zero_shot_accuracy 0.91 (chance 0.042), targeted_asr 0.69, backdoor_asr 0.86
           (plain CLIP is clearly attacked at 1%); t50: targeted_asr 1.00; r02: neither attack
           takes (0.06, 0.05); r02,e30, s0: targeted 0.31, backdoor 0.54 at zero-shot 0.98
           (attacked with 30 epochs); r05, s0: targeted 0.06, backdoor 0.49 (the backdoor
           takes, 6 captions per target do not); blend, s0: backdoor 0.69 (r1), 0.02 (r05).
Results:   docs/results/clip-poisoning.md
"""

from configs.clip_scenes import common
from robustdata import config_lib


def get_config(arg=None):
  config, _ = common.scenes_config("clip", arg, name="clip_scenes")
  config.contrastive.augment = False  # plain CLIP: no image or caption augmentation
  return config_lib.finalize(config)


def get_sweep():
  """CLIP at 0.05%, 0.2%, 0.5% and 1% per attack (and 0.2% in 30 epochs), seeds 0-2."""
  return common.sweep("configs/clip_scenes/clip.py")
