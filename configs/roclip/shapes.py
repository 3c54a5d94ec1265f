"""RoCLIP on poisoned `captioned_shapes` (issue 6): after 14 plain-CLIP epochs, every 2nd
epoch pairs each image with its nearest caption in a FIFO pool of 512 caption embeddings;
a fresh EDA caption per pair every epoch, images un-augmented.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). Pool pre-filled with real caption embeddings (set
`contrastive.pool_prefill='random'` for the reference's N(0, 1) rows).
Three deviations from the reference (configs/roclip/cc3m.py keeps its settings), measured:
- `clip_warmup_epochs=14`: the reference's first matching epoch follows one CLIP epoch of
  ~2,000 steps; here an epoch is 13 steps, and a weak model's nearest pool caption agrees with
  the image on position and colour but not on the shape (reference schedule, matching epochs 2
  and 4: same shape 0.19 / 0.17, chance 0.167), so matching teaches the image tower noise about
  the shape; that run collapsed (loss ln 128, zero gradient from epoch 5 on; seed 0, 96
  poisons per attack). Earlier matching still costs zero-shot (16 poisons per attack, no
  image chain): `clip_warmup_epochs=8` 0.43 / 0.56 (seeds 0 / 1, EDA once per run) and 0.54
  (seed 2, these settings; 0.91 with 14).
- `aug_chain='none'` (was 'small'): both image chains cost zero-shot on the 24-px shapes.
  The reference chain keeps CLIP at chance; the 'small' chain (a stretch by <= 1.15 and a
  shift by <= 3 px, bilinear) looks harmless but the CNN is far from shift-invariant (a
  1-px integer shift drops plain CLIP's zero-shot on its own training images from 0.77 to
  0.54, seed 0), so each epoch shows it new images and 25 epochs (325 steps) are not enough:
  without matching epochs (`clip_warmup_epochs=1000`), 16 poisons per attack, seeds 0-2,
  zero-shot 0.514 ± 0.183 with the 'small' chain and EDA, 0.422 ± 0.091 with the 'small'
  chain and no EDA (`eda_captions='off'`), 0.732 ± 0.094 with no image chain and EDA (CLIP:
  0.731 ± 0.092). The EDA captions were not the cost.
- `eda_captions='epoch'` (reference: one EDA caption per pair drawn once per run): a fresh
  EDA caption every epoch is a real augmentation of the 6-word captions and lifts zero-shot:
  without matching 0.843 ± 0.038 (once per run: 0.732 ± 0.094).
Measured (seeds 0-2, mean ± std; runs in /tmp/roclip_diag, one core each, 130-160 s a run):
at 16 poisons per attack zero-shot 0.833 ± 0.065, linear probe 0.845 ± 0.039, targeted ASR
0.583 ± 0.118, backdoor ASR 0.214 ± 0.015; the same without matching epochs 0.843 / 0.837 /
0.833 / 0.320, plain CLIP 0.731 / 0.755 / 0.667 / 0.321: the matching lowers the backdoor ASR
on every seed (0.35 / 0.29 / 0.32 -> 0.21 / 0.23 / 0.20) and the targeted ASR at about the
same zero-shot. `clip_warmup_epochs=10` trades utility for defence: 0.764 ± 0.060 / 0.806 /
0.417 / 0.167. At 32 poisons per attack 0.824 ± 0.051 / 0.839 / 0.917 / 0.382 ± 0.035 (CLIP
0.755 / 0.778 / 0.750 / 0.537; no matching 0.833 / 0.822 / 1.000 / 0.529): backdoor lower,
the targeted attack not stopped; at 96 0.847 / 0.860 / 1.000 / 0.872 (no matching 0.854 /
0.851 / 1.000 / 0.922). tests/contrastive/test_roclip_effect.py checks seed 0 at 16.
Command:   python -m experiments.main --config=configs/roclip/shapes.py --config.poison.count=16
Variants:  `smoke` (tiny, 2 epochs, matching in epoch 2, for tests), default (25 epochs).
Hardware:  2 CPU cores (runs pinned to one). Time: 2-2.5 minutes.
Expected:  seed 0, poison.count=16: zero_shot_accuracy 0.752 (CLIP 0.624, chance 0.17),
           linear_probe_accuracy 0.790, targeted_asr 0.50 (CLIP 1.00), backdoor_asr 0.207
           (CLIP 0.321); poison.count=96 (seed 0): 0.870 / 0.854 / 1.00 / 0.874 (CLIP 0.81 /
           0.84 / 1.00 / 0.90). The reference schedule (matching from epoch 2, cross_aug
           chain) stays at chance zero-shot (0.17-0.18).
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
