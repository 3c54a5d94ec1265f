"""SafeCLIP on poisoned `captioned_shapes` (issue 6): 4 unimodal warm-up epochs, 1 CLIP epoch
at a low learning rate, then per-epoch GMM safe/risky splits (CLIP loss on the safe pairs,
unimodal loss on the risky ones) with a growing safe fraction.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). The safe fraction grows by 0.015 per epoch (the reference 0.01 over
~26 filtering epochs, scaled to our 20). `aug_chain='small'` (augment.py): the reference
cross_aug chain keeps even plain CLIP from learning the 24-px shapes; configs/safeclip/cc3m.py
keeps it.
Command:   python -m experiments.main --config=configs/safeclip/shapes.py
Variants:  `smoke` (tiny, 3 epochs: one per phase, for tests), default (4 + 1 + 20 = 25 epochs).
Hardware:  2 CPU cores. Time: 3.5-4.5 minutes measured on 2 shared cores.
Expected:  seed 0, poison.count=96 measured: zero_shot_accuracy 0.17 (chance; CLIP 0.81),
           linear_probe_accuracy 0.33, targeted_asr 0.25, backdoor_asr 0.38: it still does not
           learn the shapes, with the 'small' chain as with cross_aug (0.19); 45 epochs with the
           safe fraction growing by 0.03 (its CLIP pass then sees about as many pairs as CLIP's
           25 epochs) reach only 0.20 (probe 0.40, backdoor_asr 0.82; 500 s). results.json's
           `safeclip_splits` counts the poisons in each safe set. Seeds 0-2, counts 32 / 96:
           zero-shot 0.16-0.23 on all 6 runs (issue-6 table of WORKSPACE.md).
"""

from configs.clip import common


def get_config(arg=None):
  config = common.shapes_config("safeclip", arg, name="safeclip_shapes")
  smoke = arg == "smoke"
  config.contrastive.augment = True        # cross_aug views in every phase
  config.contrastive.aug_chain = "small"   # the 24-px chain (augment.py; cc3m: 'cross_aug')
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
