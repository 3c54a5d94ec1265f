"""SafeCLIP on poisoned `captioned_shapes` (issue 6): 4 unimodal warm-up epochs, 1 CLIP epoch
at a low learning rate, then per-epoch GMM safe/risky splits (CLIP loss on the safe pairs,
unimodal loss on the risky ones) with a growing safe fraction.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). The safe fraction grows by 0.015 per epoch (the reference 0.01 over
~26 filtering epochs, scaled to our 20).
Command:   python -m experiments.main --config=configs/safeclip/shapes.py
Variants:  `smoke` (tiny, 3 epochs: one per phase, for tests), default (4 + 1 + 20 = 25 epochs).
Hardware:  2 CPU cores. Time: 4-5 minutes measured on 2 shared cores (load 3-6).
Expected:  seed 0 measured: backdoor_asr 0.24 (CLIP 0.59), targeted_asr 0.25 (CLIP 0.75),
           zero_shot_accuracy 0.16 (chance; CLIP 0.73), linear_probe_accuracy 0.37; at
           poison.count=96 backdoor_asr 0.98 (issue-6 table in WORKSPACE.md); results.json's
           `safeclip_splits` counts the poisons in each safe set. It stays at chance zero-shot
           even with ~all pairs safe unless `contrastive.augment=False` (cross_clip then runs
           on the un-augmented pair: zero-shot 0.37; WORKSPACE.md, issue-6 section).
"""

from configs.clip import common


def get_config(arg=None):
  config = common.shapes_config("safeclip", arg, name="safeclip_shapes")
  smoke = arg == "smoke"
  config.contrastive.augment = True        # cross_aug views in every phase
  config.contrastive.inmodal_warmup = 4 if not smoke else 1
  config.contrastive.multimodal_warmup = 1
  config.contrastive.in_lr = 2e-3
  config.contrastive.cross_lr = 2e-3
  config.contrastive.filter_lr = 2e-5      # 1/100 of the peak, as 5e-6 vs 5e-4
  config.contrastive.unimodal_pool_size = 256 if not smoke else 64
  config.contrastive.safe_threshold = 0.9
  config.contrastive.safe_fraction_update = 0.015
  config.contrastive.safe_fraction_cap = 0.85
  if smoke:
    config.train.epochs = 3
  return config.lock()
