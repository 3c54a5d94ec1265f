"""RoCLIP on poisoned `captioned_shapes` (issue 6): every 2nd epoch pairs each image with its
nearest caption in a FIFO pool of 512 caption embeddings, with cross augmentation.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). Pool pre-filled with real caption embeddings (set
`contrastive.pool_prefill='random'` for the reference's N(0, 1) rows).
Command:   python -m experiments.main --config=configs/roclip/shapes.py
Variants:  `smoke` (tiny, 2 epochs, for tests), default (25 epochs).
Hardware:  2 CPU cores. Time: 2.5-3 minutes measured on 2 shared cores (load 3-6).
Expected:  seed 0 measured: backdoor_asr 0.0 (CLIP 0.59), targeted_asr 0.25 (CLIP 0.75), but
           zero_shot_accuracy 0.18 (chance; CLIP 0.73) and linear_probe_accuracy 0.53 (CLIP
           0.75): it does not learn the shapes in 25 epochs, with or without cross_aug
           (without: zero-shot 0.16, backdoor_asr 0.99 at count 96), so its low ASR is no
           defence here (the issue-6 section of WORKSPACE.md).
"""

from configs.clip import common


def get_config(arg=None):
  config = common.shapes_config("roclip", arg, name="roclip_shapes")
  config.contrastive.augment = True        # RoCLIP's --cross_aug
  config.contrastive.pool_size = 512 if arg != "smoke" else 64
  config.contrastive.break_epoch = 2       # K: epochs 2, 4, ... match
  config.contrastive.pool_prefill = "captions"
  config.contrastive.drop_overflow = False
  return config.lock()
