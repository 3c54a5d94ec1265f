"""Data-efficient augmentation on CIFAR-10 (Liu & Mirzasoleiman, NeurIPS'22; spec §3). NOT RUN.

The reference main.py cannot run CIFAR-10 (only caltech256/tinyimagenet/imagenet), so these
settings are the repo's defaults applied to CIFAR-10: SGD m0.9, wd 1e-4, lr 0.1, batch 256,
200 epochs with x0.1 at 100/150, FL coreset of 10% refreshed every R = 5 epochs on un-augmented
softmax - onehot proxies, M = full data with crop+flip (weight 1), A = coreset with strong
augmentation (our RandAugment stands in for AutoAugment).
Paper: 6.3x speedup vs full-data strong augmentation on CIFAR-10, +7.7% over max-loss subsets
at 10% (tables not verified).

Command:   python -m experiments.main --config=configs/augment_coresets/cifar10_resnet20.py \
             --config.data.data_dir=/path/to/tfds
Variants:  `smoke` (5 steps).
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  paper: close to full strong augmentation at a fraction of its cost; not measured here.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/data-efficiency.md.
"""

from configs.crest import common
from robustdata import config_lib


def get_config(arg=None):
  common.parse(arg, ("smoke",), "augment_coresets/cifar10_resnet20")
  config = common.cifar("augment_coreset_cifar10_resnet20", dataset="cifar10",
                        model="resnet20", smoke=arg == "smoke")
  config.optim.warmup_epochs = 0.0
  config.train.batch_size = 256
  config.policy.name = "augment_coreset"
  config.policy.fraction = 0.1
  config.policy.refresh_every = 5
  config.policy.selection = "coreset"
  config.policy.main = "full"
  config.policy.kernel = "exp"
  config.policy.num_ops = 2
  config.policy.magnitude = 0.5
  return config_lib.finalize(config)
