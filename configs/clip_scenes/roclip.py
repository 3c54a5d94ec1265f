"""RoCLIP on poisoned `captioned_scenes` at the papers' poison rates (issue 23): after 5 plain
CLIP epochs, every 2nd epoch pairs each image with its nearest caption in a FIFO pool of 1,024
caption embeddings; a fresh EDA caption per pair every epoch, images un-augmented.

Setup and attack: configs/clip_scenes/common.py (same data, model, poisons and epochs as
configs/clip_scenes/clip.py). Matching epochs are 6, 8 and 10 (1-based); the pool is pre-filled
with real caption embeddings. The shapes configs' deviations from the reference (matching after
a CLIP warm-up, no image chain, EDA per epoch; configs/roclip/shapes.py says why) are kept.
results.json `roclip_matches` (and metrics.jsonl `roclip_match` records) give, per matching
epoch, the share of poisoned images whose nearest pool caption names the attack's class.
Command:   python -m experiments.main --config=configs/clip_scenes/roclip.py:r1,s0
           (its fair baseline: the same with --config.contrastive.clip_warmup_epochs=1000)
Variants:  r005 / r02 / r05 / r1 (default r1), t50, s0 / s1 / s2, e30 (30 epochs, still 5
           warm-up), blend (blended backdoor trigger), smoke (matching in epoch 2).
Hardware:  2 CPU cores. Time: about 8 minutes on one core (one XLA thread); e30 about 35.
Expected:  r1, s0: zero-shot 0.87 (CLIP 0.91), targeted ASR 0.38 (CLIP 0.69), backdoor ASR 0.59
           (CLIP 0.86): the paper's claim holds in part; t50: targeted 1.00, as CLIP;
           r02,e30, s0: zero-shot 0.96, targeted 0.06, backdoor 0.24 (CLIP 0.98, 0.31, 0.54);
           blend, s0: backdoor 0.020 (CLIP 0.69).
Results:   docs/results/clip-poisoning.md
"""

from configs.clip_scenes import common
from robustdata import config_lib


def get_config(arg=None):
  config, smoke = common.scenes_config("roclip", arg, name="roclip_scenes")
  config.contrastive.augment = True        # RoCLIP's --cross_aug: the EDA caption view
  config.contrastive.aug_chain = "none"    # no image chain (configs/roclip/shapes.py)
  config.contrastive.eda_captions = "epoch"
  config.contrastive.pool_size = 1024 if not smoke else 200
  config.contrastive.break_epoch = 2       # K: every 2nd epoch matches, once warmed up
  config.contrastive.clip_warmup_epochs = common.EPOCHS // 2 if not smoke else 0
  config.contrastive.pool_prefill = "captions"
  config.contrastive.drop_overflow = False
  return config_lib.finalize(config)


def get_sweep():
  """RoCLIP at 0.05%, 0.2%, 0.5% and 1% per attack (and 0.2% in 30 epochs), seeds 0-2."""
  return common.sweep("configs/clip_scenes/roclip.py")
