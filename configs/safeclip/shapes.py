"""SafeCLIP on poisoned `captioned_shapes`: the SafeCLIP rows of docs/results/clip-poisoning.md.
1 unimodal warm-up epoch, 1 CLIP epoch at a low learning rate, then per-epoch GMM safe/risky
splits (CLIP loss on the safe pairs, unimodal loss on the risky ones) with a growing safe
fraction.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). Changes from the reference, which configs/safeclip/cc3m.py keeps, make
it learn the 24-px shapes (measured in the results file): the CLIP passes see the un-augmented
pair and caption (`augment=False`; the unimodal loss keeps its 'small'-chain views and EDA
captions); the unimodal LR is 1/4 of the CLIP LR (`in_lr` 5e-4: at the CLIP LR one unimodal
epoch leaves the CLIP loss stuck at ln(128)); 1 unimodal epoch instead of 5; the safe fraction
grows by 0.08 per epoch (cap 0.85) instead of 0.01.
Command:   python -m experiments.main --config=configs/safeclip/shapes.py
Variants:  `smoke` (tiny, 3 epochs: one per phase, for tests), default (1 + 1 + 23 = 25 epochs).
Hardware:  2 CPU cores. Time: 200-220 s per run on one core (2 cores shared).
Expected:  with config.contrastive.phase_c_warmup (the default), seed 0 at poison.count=16
           (one XLA thread): targeted_asr 0.25 (CLIP 1.00), backdoor_asr 0.18 (0.33), zero-shot
           0.68 (0.63), 12 of 32 poisons in the last safe set of 1,332 pairs.
           With phase_c_warmup=False, seeds 0-2: at poison.count=16 targeted_asr 0.167 (0.667),
           backdoor_asr 0.080 (0.321), zero_shot_accuracy 0.702 (0.731); at the default 32
           zero-shot 0.708 (0.755), targeted 0.417 (0.750), backdoor 0.607 (0.537): at 4% and
           11% the split does not keep the poisons out (results.json `safeclip_splits`).
           tests/contrastive/test_safeclip_effect.py checks seed 0 at 16 on one XLA thread (its
           backdoor bound without the warm-up: with it, seed 0's backdoor ASR depends on the
           build, 0.18 or 0.36 against CLIP's 0.33 or 0.31).
Results:   docs/results/clip-poisoning.md
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.shapes_config("safeclip", arg, name="safeclip_shapes")
  smoke = arg == "smoke"
  # The CLIP passes (Phase B, Phase C safe pass) train on the un-augmented pair and the
  # original caption, as plain CLIP does; the unimodal loss keeps its two 'small'-chain views
  # and two EDA captions (robustdata.contrastive.data.step_tokens). cc3m: the reference cross_aug everywhere.
  config.contrastive.augment = False
  config.contrastive.aug_chain = "small"   # the unimodal views' chain (cc3m: 'cross_aug')
  config.contrastive.inmodal_warmup = 1    # reference 5; 2 reached only 0.28 zero-shot (docstring)
  config.contrastive.multimodal_warmup = 1
  # Unimodal LR 1/4 of the CLIP LR: at 2e-3 (= CLIP's) even one unimodal epoch leaves the CLIP
  # loss stuck at ln(batch) (all pairs equally similar, gradient norm ~0.03) for 15+ epochs.
  config.contrastive.in_lr = 5e-4
  config.contrastive.cross_lr = 2e-3
  config.contrastive.filter_lr = 2e-5      # 1/100 of the CLIP peak, as 5e-6 vs 5e-4
  config.contrastive.unimodal_pool_size = 256 if not smoke else 64
  config.contrastive.safe_threshold = 0.9
  # +0.08 per epoch reaches the 0.85 cap after ~9 filtering epochs; at +0.015 (or +0.04) the
  # CLIP pass sees too few pairs to learn the shapes in 25 epochs.
  config.contrastive.safe_fraction_update = 0.08
  config.contrastive.safe_fraction_cap = 0.85
  if smoke:
    config.train.epochs = 3
  return config_lib.finalize(config)
