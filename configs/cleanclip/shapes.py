"""CleanCLIP on poisoned `captioned_shapes`: the CleanCLIP rows of
docs/results/clip-poisoning.md. CLIP pre-training on the poisoned pairs (25 epochs, as
configs/clip/shapes.py), then 30 epochs (180 steps) of fine-tuning on 768 clean pairs at lr 2e-3
with the multimodal + unimodal loss (λ1 = λ2 = 1) and a fresh AdamW state.

Setup and attack: configs/clip/common.py. To fine-tune an existing poisoned CLIP run instead
of pre-training here (configs/campaigns/clip.py does), set
--config.contrastive.pretrained_checkpoint=<clip run dir>
--config.contrastive.pretrain_epochs=0 --config.train.epochs=30.
Command:   python -m experiments.main --config=configs/cleanclip/shapes.py
Variants:  `smoke` (tiny, 1 CLIP + 1 fine-tuning epoch, for tests), default (25 + 30 epochs).
Hardware:  1-2 CPU cores. Time: ~5 minutes; fine-tuning a CLIP run alone ~2.5 minutes (1 core).
Expected:  fine-tuning the CLIP runs, seeds 0-2 (CLIP in brackets): at poison.count=32
           targeted_asr 0.083 (0.750), backdoor_asr 0.370 (0.537), zero_shot_accuracy 0.796
           (0.755); at 96: 0.333 (1.000), 0.676 (0.943), 0.829 (0.814).
Results:   docs/results/clip-poisoning.md (also the fine-tuning budget behind lr 2e-3 and 30
           epochs)
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.shapes_config("cleanclip", arg, name="cleanclip_shapes")
  smoke = arg == "smoke"
  config.train.epochs = 55 if not smoke else 2
  config.contrastive.pretrained_checkpoint = ""
  config.contrastive.pretrain_epochs = 25 if not smoke else 1
  config.contrastive.finetune_lr = 2e-3
  config.contrastive.finetune_warmup_steps = 5 if not smoke else 1
  config.contrastive.clean_subset_size = 768 if not smoke else 128
  config.contrastive.clip_weight = 1.0
  config.contrastive.inmodal_weight = 1.0
  return config_lib.finalize(config)
