"""SafeCLIP on poisoned `captioned_scenes` at the papers' poison rates (issue 23): 1 unimodal
warm-up epoch, 1 CLIP epoch at a low learning rate, then per-epoch GMM safe/risky splits
(CLIP loss on the safe pairs, unimodal loss on the risky ones) with a growing safe fraction.

Setup and attack: configs/clip_scenes/common.py. The shapes config's settings
(configs/safeclip/shapes.py says why) are kept: un-augmented CLIP passes, unimodal LR 1/4 of
the CLIP LR, 1 unimodal epoch, safe fraction +0.08 per epoch up to 0.85. results.json
`safeclip_splits` (metrics.jsonl `safeclip_split`) give per split the poisons in the safe set
(`safe_poison_rate` against `base_poison_rate`, per attack `*_in_safe`) and the GMM's
components and separation (`gmm_separation`, d').
Command:   python -m experiments.main --config=configs/clip_scenes/safeclip.py:r1,s0
Variants:  r005 / r02 / r05 / r1 (default r1), t50, s0 / s1 / s2, e30 (30 epochs), blend
           (blended backdoor trigger), smoke (3 epochs: one per phase).
Ablations: --config.contrastive.safe_set=uniform (each safe set a uniform random draw of the
           size the scores chose), --config.contrastive.risky_pass=False (no unimodal pass on
           the risky pairs); unset, they are the method and change no run id.
Hardware:  2 CPU cores. Time: about 12 minutes on one core (one XLA thread); e30 about 50.
Expected:  r1, s0: targeted ASR 0.00 and backdoor ASR 0.031 (CLIP 0.69, 0.86), safe-set poison
           rate 0.05-0.6% against a 1.9% base rate, but zero-shot 0.23 (CLIP 0.91): the safe
           fraction reaches only 61% by the last epoch, about 2.7 epochs of pairs under the CLIP
           loss (CLIP trained 3 epochs: 0.30); the results file says more. With
           phase_c_warmup=False (the table's runs): targeted 0.06, backdoor 0.009, zero-shot 0.23.
           r02,e30, s0: zero-shot 0.92, targeted 0.00, backdoor 0.040 (CLIP 0.98, 0.31, 0.54):
           with 30 epochs the safe fraction reaches its cap at epoch 12. blend, s0: backdoor
           0.17 (CLIP 0.69).
Results:   docs/results/clip-poisoning.md
"""

from configs.clip_scenes import common
from robustdata import config_lib


def get_config(arg=None):
  config, smoke = common.scenes_config("safeclip", arg, name="safeclip_scenes")
  config.contrastive.augment = False       # CLIP passes on the un-augmented pair
  config.contrastive.aug_chain = "small"   # the unimodal views' chain
  config.contrastive.inmodal_warmup = 1
  config.contrastive.multimodal_warmup = 1
  config.contrastive.in_lr = 5e-4          # 1/4 of the CLIP LR (configs/safeclip/shapes.py)
  config.contrastive.cross_lr = 2e-3
  config.contrastive.filter_lr = 2e-5      # 1/100 of the CLIP peak, as 5e-6 vs 5e-4
  config.contrastive.unimodal_pool_size = 1024 if not smoke else 200
  config.contrastive.safe_threshold = 0.9
  config.contrastive.safe_fraction_update = 0.08
  config.contrastive.safe_fraction_cap = 0.85
  if smoke:
    config.train.epochs = 3
  return config_lib.finalize(config)


def get_sweep():
  """SafeCLIP at 0.05%, 0.2%, 0.5% and 1% per attack (and 0.2% in 30 epochs), seeds 0-2."""
  return common.sweep("configs/clip_scenes/safeclip.py")
