"""SafeCLIP on poisoned CC3M with the reference settings (spec §3).

Paper (ICML 2024, 1M CC3M, also Visual Genome and MS-COCO): targeted ASR 93.75% -> 0%,
backdoor ASR 100% -> 0%, zero-shot and linear probe on par with CLIP. Reference defaults:
32 epochs, global batch 128, in_lr = cross_lr = 5e-4, filter_lr 5e-6, 5 unimodal + 1 CLIP
warm-up epochs, pools of 256, GMM posterior >= 0.9, safe fraction +0.01 per epoch up to 0.85.
Command:   python -m experiments.main --config=configs/safeclip/cc3m.py \
             --config.data.train_file=/path/to/cc3m_poisoned/train.csv
           At the papers' scale read the pairs by row instead (caption_csv decodes every
           image into memory): convert the CSV once, then point the run at the records:
             python -m robustdata.data.convert --kind caption_table --split train \
               --input /path/to/train.csv --output /path/to/cc3m_records --encoding jpeg
             ... --config.data.name=caption_records --config.data.data_dir=/path/to/cc3m_records
Variants:  `smoke` (tiny ViT, 3 epochs on the same CSV), default.
Hardware:  8 GPUs in the paper; no CPU run is meaningful.
Expected:  targeted_asr 0.0, backdoor_asr 0.0 on the paper's evaluation sets (not computed by
           caption_csv runs; see configs/clip/common.py), reproduced here: not yet.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/clip-poisoning.md.
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.cc3m_config("safeclip", arg, name="safeclip_cc3m")
  smoke = arg == "smoke"
  config.train.epochs = 32 if not smoke else 3
  config.train.batch_size = 128 if not smoke else config.train.batch_size
  config.contrastive.augment = True
  config.contrastive.aug_chain = "cross_aug"    # the reference image chain
  config.contrastive.inmodal_warmup = 5 if not smoke else 1
  config.contrastive.multimodal_warmup = 1
  config.contrastive.in_lr = 5e-4
  config.contrastive.cross_lr = 5e-4
  config.contrastive.filter_lr = 5e-6
  config.contrastive.unimodal_pool_size = 256 if not smoke else 16
  config.contrastive.safe_threshold = 0.9
  config.contrastive.safe_fraction_update = 0.01
  config.contrastive.safe_fraction_cap = 0.85
  return config_lib.finalize(config)
