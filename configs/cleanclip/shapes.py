"""CleanCLIP on poisoned `captioned_shapes` (issue 6): CLIP pre-training on the poisoned pairs
(25 epochs, as configs/clip/shapes.py), then 30 epochs (180 steps) of fine-tuning on 768 clean
pairs at lr 2e-3 with the multimodal + unimodal loss and a fresh AdamW state.

Fine-tuning budget, measured on the seed-0 CLIP run with 96 poisons per attack (zero-shot /
targeted ASR / backdoor ASR; CLIP itself 0.81 / 1.00 / 0.90): 5 epochs at 5e-4 (the previous
default) 0.80 / 1.00 / 0.93; 30 epochs at 5e-4 0.81 / 1.00 / 0.86; **30 epochs at 2e-3 0.82 /
0.50 / 0.35**; the same without the unimodal terms (`inmodal_weight=0`, plain CLIP fine-tuning
on the clean pairs) 0.74 / 0.75 / 0.88 — the unimodal loss is what removes the backdoor, as the
CleanCLIP paper says.

Setup and attack: configs/clip/common.py. To fine-tune an existing poisoned CLIP run instead
of pre-training here (the campaign does), set --config.contrastive.pretrained_checkpoint=<clip
run dir> --config.contrastive.pretrain_epochs=0 --config.train.epochs=30.
Command:   python -m experiments.main --config=configs/cleanclip/shapes.py
Variants:  `smoke` (tiny, 1 CLIP + 1 fine-tuning epoch, for tests), default (25 + 30 epochs).
Hardware:  1-2 CPU cores. Time: ~5 minutes; fine-tuning a CLIP run alone ~2.5 minutes (1 core).
Expected:  measured fine-tuning the CLIP runs, 3 seeds (issue-6 table in WORKSPACE.md).
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
