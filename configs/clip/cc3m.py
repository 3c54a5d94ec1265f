"""CLIP from scratch on poisoned CC3M (the undefended baseline of RoCLIP/SafeCLIP, spec §0/§2).

Paper row: RoCLIP (NeurIPS 2023) and SafeCLIP (ICML 2024), 1M CC3M pairs, RN50: plain CLIP
reaches targeted ASR 93.75% (15/16 targets) and backdoor ASR 100%; ImageNet zero-shot of a
from-scratch CC3M RN50 is ~19% (CleanCLIP maintainers). Settings of the RoCLIP comparison:
24 epochs, global batch 512, lr 5e-5, 10 000 warm-up steps, AdamW wd 0.1.
Command:   python -m experiments.main --config=configs/clip/cc3m.py \
             --config.data.train_file=/path/to/cc3m_poisoned/train.csv
           At the papers' scale read the pairs by row instead (caption_csv decodes every
           image into memory): convert the CSV once, then point the run at the records:
             python -m robustdata.data.convert --kind caption_table --split train \
               --input /path/to/train.csv --output /path/to/cc3m_records --encoding jpeg
             ... --config.data.name=caption_records --config.data.data_dir=/path/to/cc3m_records
Variants:  `smoke` (tiny ViT, 2 epochs on the same CSV), default.
Hardware:  8 GPUs in the papers (~1 day for 24 epochs of 1M pairs); no CPU run is meaningful.
Expected:  targeted_asr ~0.94, backdoor_asr ~1.0 on the papers' evaluation sets (not computed
           by caption_csv runs; see configs/clip/common.py), reproduced here: not yet.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/clip-poisoning.md.
"""

from configs.clip import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.cc3m_config("clip", arg, name="clip_cc3m")
  config.optim.learning_rate = 5e-5
  config.train.epochs = 24 if arg != "smoke" else config.train.epochs
  config.train.batch_size = 512 if arg != "smoke" else config.train.batch_size
  return config_lib.finalize(config)
