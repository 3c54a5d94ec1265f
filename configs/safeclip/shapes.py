"""SafeCLIP on poisoned `captioned_shapes` (issue 6): 1 unimodal warm-up epoch, 1 CLIP epoch
at a low learning rate, then per-epoch GMM safe/risky splits (CLIP loss on the safe pairs,
unimodal loss on the risky ones) with a growing safe fraction.

Setup and attack: configs/clip/common.py (same data, model, poisons and epochs as
configs/clip/shapes.py). Three changes from the reference make it learn the 24-px shapes
(seed 0, poison.count=96, zero-shot; chance 0.17, CLIP 0.81; one core each, ~4.5 min):
- the CLIP passes see the un-augmented pair and caption (`augment=False`; the unimodal loss
  keeps its 'small'-chain views and EDA captions): 0.63, against 0.48 with augmented ones;
- the unimodal LR is 1/4 of the CLIP LR (`in_lr` 5e-4): at 2e-3 one unimodal epoch leaves
  the CLIP loss at ln(128) (gradient norm ~0.03) for over 10 epochs: 0.16 even with every
  pair safe, against 0.76 with no unimodal epoch and every pair safe;
- 1 unimodal epoch and safe fraction +0.08 per epoch (cap 0.85 after ~9 of 23 filtering
  epochs): +0.04 reached 0.46 (in_lr 5e-4 or 2e-4), 2 unimodal epochs with +0.04 0.28, the
  previous settings (4 epochs, in_lr 2e-3, +0.015) 0.18. The reference grows it by 0.01 over
  ~26 filtering epochs.
configs/safeclip/cc3m.py keeps the reference settings.
Command:   python -m experiments.main --config=configs/safeclip/shapes.py
Variants:  `smoke` (tiny, 3 epochs: one per phase, for tests), default (1 + 1 + 23 = 25 epochs).
Hardware:  2 CPU cores. Time: 200-220 s per run on one core (2 cores shared).
Expected:  benchmarks/clip_table.py, seeds 0-2 (CLIP in brackets), at poison.count=32:
           zero_shot_accuracy 0.634 / 0.628 / 0.862 (0.73 / 0.73 / 0.80), linear_probe 0.76 mean,
           targeted_asr 0.50 / 0.50 / 0.25 (0.75 each), backdoor_asr 0.52 / 0.80 / 0.50
           (0.59 / 0.49 / 0.53); at 96: zero-shot 0.626 / 0.546 / 0.802 (0.81 each), targeted
           1.00 (1.00), backdoor 0.93 / 0.94 / 0.91 (0.90 / 0.97 / 0.95). The split does not
           isolate the poisons: results.json's `safeclip_splits` has 31-39 of 64 poisons in the
           last safe set of 1,360 pairs (2.3-2.9%, base rate 4.0%) and 156-169 of 192 in 1,468
           (10.6-11.5%, base rate 11.1%). So it learns, but defends little at those rates.
           At poison.count=16 (2% of the pairs) it does: targeted ASR 0.67 -> 0.17, backdoor
           0.32 -> 0.08, zero-shot 0.70 vs CLIP's 0.73, 3-11 of 32 poisons in the last safe
           set of 1,332 (3 seeds, one core each; unpinned on 2 cores seed 0 gave backdoor
           0.25 vs CLIP's 0.31: the margin depends on the numerics;
           tests/contrastive/test_safeclip_effect.py checks seed 0 on one XLA thread).
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.shapes_config("safeclip", arg, name="safeclip_shapes")
  smoke = arg == "smoke"
  # The CLIP passes (Phase B, Phase C safe pass) train on the un-augmented pair and the
  # original caption, as plain CLIP does; the unimodal loss keeps its two 'small'-chain views
  # and two EDA captions (experiment.step_tokens). cc3m: the reference cross_aug everywhere.
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
