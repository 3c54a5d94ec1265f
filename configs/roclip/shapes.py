"""RoCLIP on poisoned `captioned_shapes`: the RoCLIP rows of docs/results/clip-poisoning.md.
After 14 plain-CLIP epochs, every 2nd epoch pairs each image with its nearest caption in a FIFO
pool of 512 caption embeddings; a fresh EDA caption per pair every epoch, images un-augmented.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). Pool pre-filled with real caption embeddings (set
`contrastive.pool_prefill='random'` for the reference's N(0, 1) rows). Three deviations from the
reference, which configs/roclip/cc3m.py keeps, each measured in the results file:
- `clip_warmup_epochs=14`: a weak model's nearest pool caption agrees with the image on colour
  and position but not on the shape, so early matching teaches the image tower noise; the
  reference schedule (matching from epoch 2) stays at chance zero-shot here.
- `aug_chain='none'`: any image chain costs zero-shot on the 24-px shapes (the CNN is not
  shift-invariant, so each epoch shows it new images).
- `eda_captions='epoch'`: a fresh EDA caption every epoch (reference: one per run) is a real
  augmentation of the 6-word captions and lifts zero-shot.
Command:   python -m experiments.main --config=configs/roclip/shapes.py --config.poison.count=16
           (its fair baseline: the same with --config.contrastive.clip_warmup_epochs=1000)
Variants:  `smoke` (tiny, 2 epochs, matching in epoch 2, for tests), default (25 epochs).
Hardware:  2 CPU cores (runs pinned to one). Time: 2-2.5 minutes.
Expected:  seeds 0-2, poison.count=16: zero_shot_accuracy 0.833, linear_probe_accuracy 0.845,
           targeted_asr 0.583, backdoor_asr 0.214 (without matching epochs 0.843 / 0.837 /
           0.833 / 0.320; CLIP 0.731 / 0.755 / 0.667 / 0.321); at the default count 32:
           0.824 / 0.839 / 0.917 / 0.382. Seed 0 at 16: zero-shot 0.752 (CLIP 0.624), targeted
           0.50 (CLIP 1.00), backdoor 0.207 (CLIP 0.321);
           tests/contrastive/test_roclip_effect.py checks seed 0 at 16.
Results:   docs/results/clip-poisoning.md
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.shapes_config("roclip", arg, name="roclip_shapes")
  config.contrastive.augment = True        # RoCLIP's --cross_aug (EDA caption + image chain)
  # Captions only: any image chain, even 'small', costs zero-shot here (docstring; cc3m:
  # 'cross_aug'); a fresh EDA caption every epoch instead of one per run.
  config.contrastive.aug_chain = "none"
  config.contrastive.eda_captions = "epoch"
  config.contrastive.pool_size = 512 if arg != "smoke" else 64
  config.contrastive.break_epoch = 2       # K: every 2nd epoch matches, once warmed up
  # Plain CLIP first until the nearest pool caption names the image's shape (docstring).
  config.contrastive.clip_warmup_epochs = 14 if arg != "smoke" else 0
  config.contrastive.pool_prefill = "captions"
  config.contrastive.drop_overflow = False
  return config_lib.finalize(config)
