"""RoCLIP on poisoned CC3M with the reference settings (spec §2).

Paper (NeurIPS 2023, 1M CC3M, RN50): targeted ASR 93.75% (CLIP) -> 12.5% (RoCLIP), backdoor
ASR -> 0%, linear probe +10% over CLIP on average, zero-shot roughly unchanged. Reference
defaults: 24 epochs, global batch 512, lr 5e-5, pool 21 845, K = 2, --cross_aug.
Command:   python -m experiments.main --config=configs/roclip/cc3m.py \
             --config.data.train_file=/path/to/cc3m_poisoned/train.csv
           At the papers' scale read the pairs by row instead (caption_csv decodes every
           image into memory): convert the CSV once, then point the run at the records:
             python -m robustdata.data.convert --kind caption_table --split train \
               --input /path/to/train.csv --output /path/to/cc3m_records --encoding jpeg
             ... --config.data.name=caption_records --config.data.data_dir=/path/to/cc3m_records
Variants:  `smoke` (tiny ViT, 2 epochs on the same CSV), default.
Hardware:  8 GPUs in the paper; no CPU run is meaningful.
Expected:  targeted_asr ~0.125 on the paper's 16 targets (evaluations are not computed by
           caption_csv runs; see configs/clip/common.py), reproduced here: not yet.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/clip-poisoning.md.
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.cc3m_config("roclip", arg, name="roclip_cc3m")
  smoke = arg == "smoke"
  config.optim.learning_rate = 5e-5
  config.train.epochs = 24 if not smoke else config.train.epochs
  config.train.batch_size = 512 if not smoke else config.train.batch_size
  config.contrastive.augment = True
  config.contrastive.pool_size = 21845 if not smoke else 64
  config.contrastive.break_epoch = 2
  config.contrastive.clip_warmup_epochs = 0     # reference: matching from epoch K on
  config.contrastive.aug_chain = "cross_aug"    # the reference image chain
  config.contrastive.pool_prefill = "captions"  # 'random' reproduces the reference's rows
  config.contrastive.drop_overflow = True       # the reference FIFO drops the batch tail
  return config_lib.finalize(config)
