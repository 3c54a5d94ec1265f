"""CleanCLIP fine-tuning of a poisoned CC3M CLIP with the reference recipe (spec §5).

Paper (ICCV 2023): fine-tuning a backdoored CLIP (pre-trained 64 epochs, batch 128, lr 5e-4 on
CC3M with 1 500 poisons) on a clean 100K CC3M subset, 10 epochs, batch 64, lr 1e-5, 50 warm-up
steps, lambda_1 = lambda_2 = 1, removes most of the backdoor at a small zero-shot cost; exact
figures unverified (spec §10); the maintainers report ~19% ImageNet zero-shot from scratch.
Command:   python -m experiments.main --config=configs/cleanclip/cc3m.py \
             --config.data.train_file=/path/to/cc3m_clean100k/train.csv \
             --config.contrastive.pretrained_checkpoint=runs/clip_cc3m-<hash>
           At the papers' scale read the pairs by row instead (caption_csv decodes every
           image into memory): convert the CSV once, then point the run at the records:
             python -m robustdata.data.convert --kind caption_table --split train \
               --input /path/to/train.csv --output /path/to/cc3m_records --encoding jpeg
             ... --config.data.name=caption_records --config.data.data_dir=/path/to/cc3m_records
Variants:  `smoke` (tiny ViT, 1 CLIP + 1 fine-tuning epoch in the run, no checkpoint), default.
Hardware:  1-8 GPUs; no CPU run is meaningful.
Expected:  backdoor ASR near 0 on ImageNet-1K val with the trigger (not computed by caption_csv
           runs; see configs/clip/common.py), reproduced here: not yet.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/clip-poisoning.md.
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.cc3m_config("cleanclip", arg, name="cleanclip_cc3m")
  smoke = arg == "smoke"
  config.train.epochs = 10 if not smoke else 2
  config.train.batch_size = 64 if not smoke else config.train.batch_size
  # The poisoned CLIP to clean: a finished clip run directory (see the command above).
  config.contrastive.pretrained_checkpoint = "runs/clip_cc3m_poisoned" if not smoke else ""
  config.contrastive.pretrain_epochs = 0 if not smoke else 1
  config.contrastive.finetune_lr = 1e-5
  config.contrastive.finetune_warmup_steps = 50 if not smoke else 1
  config.contrastive.clean_subset_size = 100000 if not smoke else 0
  config.contrastive.clip_weight = 1.0
  config.contrastive.inmodal_weight = 1.0
  return config_lib.finalize(config)
