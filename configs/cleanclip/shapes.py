"""CleanCLIP on poisoned `captioned_shapes` (issue 6): CLIP pre-training on the poisoned pairs
(25 epochs, as configs/clip/shapes.py), then 5 epochs of fine-tuning on 768 clean pairs with
the multimodal + unimodal loss and a fresh AdamW state.

Setup and attack: configs/clip/common.py. To fine-tune an existing poisoned CLIP run instead
of pre-training here (the campaign does), set --config.contrastive.pretrained_checkpoint=<clip
run dir> --config.contrastive.pretrain_epochs=0 --config.train.epochs=5.
Command:   python -m experiments.main --config=configs/cleanclip/shapes.py
Variants:  `smoke` (tiny, 1 CLIP + 1 fine-tuning epoch, for tests), default (25 + 5 epochs).
Hardware:  2 CPU cores. Time: ~3 minutes; fine-tuning a CLIP run alone ~1 minute.
Expected:  seed 0 measured (fine-tuning the CLIP run): backdoor_asr 0.53 (CLIP 0.59),
           targeted_asr 1.0, zero_shot_accuracy 0.75, linear_probe_accuracy 0.77 (issue-6
           table in WORKSPACE.md).
"""

from configs.clip import common


def get_config(arg=None):
  config = common.shapes_config("cleanclip", arg, name="cleanclip_shapes")
  smoke = arg == "smoke"
  config.train.epochs = 30 if not smoke else 2
  config.contrastive.pretrained_checkpoint = ""
  config.contrastive.pretrain_epochs = 25 if not smoke else 1
  config.contrastive.finetune_lr = 5e-4
  config.contrastive.finetune_warmup_steps = 5 if not smoke else 1
  config.contrastive.clean_subset_size = 768 if not smoke else 128
  config.contrastive.clip_weight = 1.0
  config.contrastive.inmodal_weight = 1.0
  return config.lock()
