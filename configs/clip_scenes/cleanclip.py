"""CleanCLIP on poisoned `captioned_scenes` at the papers' poison rates (issue 23): CLIP
pre-training on the poisoned pairs (10 epochs, as configs/clip_scenes/clip.py), then 6 epochs
of fine-tuning on 5,000 clean pairs at lr 2e-3 with the multimodal + unimodal loss
(λ1 = λ2 = 1) and a fresh AdamW state.

Setup and attack: configs/clip_scenes/common.py. To fine-tune an existing poisoned CLIP run
instead, set --config.contrastive.pretrained_checkpoint=<clip run dir>
--config.contrastive.pretrain_epochs=0 --config.train.epochs=6.
Command:   python -m experiments.main --config=configs/clip_scenes/cleanclip.py:r1,s0
Variants:  r005 / r02 / r05 / r1 (default r1), t50, s0 / s1 / s2, smoke (1 CLIP + 1
           fine-tuning epoch), e30: fine-tune the finished configs/clip_scenes/clip.py run of
           the same variant (30 epochs; its upstream stage `config.pretrained`, trained first in
           the same workdir or reused) for 6 epochs, the paper's protocol; blend (blended
           backdoor trigger).
Hardware:  2 CPU cores. Time: about 10 minutes on one core (one XLA thread); e30 about 4 after
           its CLIP stage (about 40).
Expected:  r1, s0: zero-shot 0.92, targeted ASR 0.06, backdoor ASR 0.17 (CLIP 0.91, 0.69, 0.86);
           t50: targeted ASR 0.19 (CLIP 1.00); seeds 0-2: 0.17 ± 0.04 (CLIP 1.00 in each);
           r02,e30, s0: zero-shot 0.96, targeted 0.06, backdoor 0.034 (its CLIP stage 0.98, 0.31,
           0.54); blend, s0: backdoor 0.033 (CLIP 0.69).
Results:   docs/results/clip-poisoning.md
"""

from configs.clip_scenes import clip
from configs.clip_scenes import common
from robustdata import config_lib


def get_config(arg=None):
  config, smoke = common.scenes_config("cleanclip", arg, name="cleanclip_scenes")
  config.contrastive.pretrained_checkpoint = ""
  if common.variant_tokens(arg, "cleanclip_scenes") & set(common.LONG):
    # The paper's protocol: fine-tune a finished poisoned CLIP, here the clip.py run of the
    # same variant as an upstream stage (same workdir; reused when finished).
    config.pretrained = clip.get_config(arg)
    config.train.epochs = 6 if not smoke else 1
    config.contrastive.pretrain_epochs = 0
  else:
    config.train.epochs = common.EPOCHS + 6 if not smoke else 2
    config.contrastive.pretrain_epochs = common.EPOCHS if not smoke else 1
  config.contrastive.finetune_lr = 2e-3
  config.contrastive.finetune_warmup_steps = 5 if not smoke else 1
  config.contrastive.clean_subset_size = 5000 if not smoke else 300
  config.contrastive.clip_weight = 1.0
  config.contrastive.inmodal_weight = 1.0
  return config_lib.finalize(config)


def get_sweep():
  """CleanCLIP at 0.05%, 0.2%, 0.5% and 1% per attack (and 0.2% after a 30-epoch CLIP),
  seeds 0-2."""
  return common.sweep("configs/clip_scenes/cleanclip.py")
