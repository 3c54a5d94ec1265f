"""RoCLIP on poisoned `captioned_shapes` (issue 6): after 14 plain-CLIP epochs, every 2nd
epoch pairs each image with its nearest caption in a FIFO pool of 512 caption embeddings;
EDA captions and the 'small' image chain (augment.py) throughout.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). Pool pre-filled with real caption embeddings (set
`contrastive.pool_prefill='random'` for the reference's N(0, 1) rows).
Two deviations from the reference (configs/roclip/cc3m.py keeps its settings), both measured
(seed 0, 96 poisons per attack; WORKSPACE.md, issue-6 section):
- `clip_warmup_epochs=14`: the reference's first matching epoch follows one CLIP epoch of
  ~2,000 steps; here an epoch is 13 steps, and a weak model's nearest pool caption agrees with
  the image on position and colour but not on the shape (reference schedule, matching epochs 2
  and 4: same shape 0.19 / 0.17, chance 0.167), so matching teaches the image tower noise about
  the shape; that run collapsed (loss ln 128, zero gradient from epoch 5 on). With the 'small'
  chain the shape agreement is 0.17-0.27 through epoch 9 and 0.55 at epoch 15; in the matching
  epochs 16-24 it is 0.51-0.66.
- `aug_chain='small'`: the reference crop (area 0.08-1), flip, colour jitter, grayscale and blur
  keep CLIP from learning the 24-px shapes (augment.py); without matching epochs, the 'small'
  chain with EDA captions reaches zero-shot 0.70 (an area-(0.5, 1) crop + blur: 0.19).
Command:   python -m experiments.main --config=configs/roclip/shapes.py
Variants:  `smoke` (tiny, 2 epochs, matching in epoch 2, for tests), default (25 epochs).
Hardware:  2 CPU cores. Time: 2.5-3.5 minutes measured on 2 shared cores.
Expected:  seed 0, poison.count=96 measured: zero_shot_accuracy 0.61 (CLIP 0.81, chance 0.17),
           linear_probe_accuracy 0.79 (CLIP 0.84), targeted_asr 0.75 (CLIP 1.00), backdoor_asr
           0.83 (CLIP 0.90). Over seeds 0-2 and counts 32 / 96 zero-shot is 0.22-0.76 (>= 0.5
           on 3 of 6 runs) and the defence is weak (issue-6 table of WORKSPACE.md). The
           reference schedule (matching from epoch 2, cross_aug chain) stays at chance zero-shot
           (0.17-0.18).
"""

from configs.clip import common


def get_config(arg=None):
  config = common.shapes_config("roclip", arg, name="roclip_shapes")
  config.contrastive.augment = True        # RoCLIP's --cross_aug (EDA caption + image chain)
  config.contrastive.aug_chain = "small"   # the 24-px chain (augment.py; cc3m: 'cross_aug')
  config.contrastive.pool_size = 512 if arg != "smoke" else 64
  config.contrastive.break_epoch = 2       # K: every 2nd epoch matches, once warmed up
  # Plain CLIP first until the nearest pool caption names the image's shape (docstring).
  config.contrastive.clip_warmup_epochs = 14 if arg != "smoke" else 0
  config.contrastive.pool_prefill = "captions"
  config.contrastive.drop_overflow = False
  return config.lock()
