"""DP-SGD study (spec §6, Watson et al. 2023) on CIFAR-10 (tfds, local data_dir): SGD,
clip-only, noise-only and DP-SGD at epsilon 1, 3, 8 (delta 1e-5 < 1/N = 1/45,000), and
magnitude pruning, with the GroupNorm CNN and ghost clipping. NOT RUN.

Command:   python -m experiments.main --config=configs/dpsgd/cifar10.py \
             --config.data.data_dir=/path/to/tfds
           (variants as in dpsgd/digits.py: eps1, eps8, sgd, clip_only, noise_only, sparsity90,
           dp_then_sgd, sgd_then_dp, each also 'name,smoke')
Variants:  default = dp_sgd at epsilon 3 (sigma calibrated over 30 epochs x 44 steps),
           `smoke` (1 epoch, 5 steps).
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  not measured here; DP-SGD CNNs at epsilon 3 typically reach 0.55-0.65 test accuracy
           on CIFAR-10 without pre-training, SGD ~0.80 with this small CNN.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/privacy.md.
"""

from configs.dpsgd import common
from robustdata import config_lib


def get_config(arg=None):
  config = config_lib.base_config()
  config.name = "dpsgd_cifar10"
  config.seed = 0
  config.method = "erm"

  config.data.name = "cifar10"
  config.data.data_dir = ""           # a prepared tfds data_dir; never downloaded
  config.data.augment = ()            # no augmentation, as in the digits study

  config.model.name = "cnn"
  config.model.channels = (32, 64)
  config.model.dense = 128
  config.model.norm = "group"         # BatchNorm is refused under DP

  config.optim.name = "sgd"
  config.optim.learning_rate = 1.0    # on the clipped mean (C = 1); one step size for all modes
  config.optim.momentum = 0.9
  config.optim.weight_decay = 0.0
  config.optim.schedule = "cosine"

  config.train.epochs = 30
  config.train.batch_size = 1024      # expected batch: q = 1024 / 45,000, 44 steps per epoch
  config.train.eval_batch_size = 1024
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 200

  config.policy.name = "poisson"

  config.privacy.mode = "dp_sgd"
  config.privacy.clip_norm = 1.0
  config.privacy.target_epsilon = 3.0
  config.privacy.delta = 1e-5
  config.privacy.sampling = "poisson"
  config.privacy.accountant = "rdp"
  config.privacy.clipping = "ghost"
  config.privacy.prune_scope = "global"
  config.privacy.prune_start_epoch = 5
  config.privacy.prune_every_epochs = 5

  config, smoke = common.apply_variant(config, arg, file="dpsgd/cifar10")
  if smoke:
    config.train.epochs = 1
    config.train.max_steps = 5
  return config_lib.finalize(config)


def get_sweep():
  """The four modes at epsilon 1, 3, 8 and dp_sgd at epsilon 3 with 50-95% sparsity."""
  return common.sweep()
