"""DP-SGD study (spec §6, Watson et al. 2023) on the embedded 8x8 digits: SGD, clip-only,
noise-only and DP-SGD, epsilon in {1, 3, 8} at delta 1e-5, and magnitude pruning.

Command:   python -m experiments.main --config=configs/dpsgd/digits.py
           (variants: --config=configs/dpsgd/digits.py:eps1, eps8, sgd, clip_only, noise_only,
           sparsity90, dp_then_sgd, sgd_then_dp, each also 'name,smoke'; the tables:
           configs/campaigns/dpsgd.py)
Variants:  default = dp_sgd at epsilon 3 (sigma 2.37, calibrated over the run's 200 steps),
           `smoke` (2 epochs), and the variants above.
Hardware:  2 CPU cores (shared, load 5-8). Time: ~20 s per run (ghost clipping), ~15 s (smoke);
           sparsity90 ~9 s of training on 2 quiet cores (the mask is a step operand, so mask
           updates reuse the compiled step).
Expected:  test_accuracy 0.877 at epsilon 3 (seeds 0-2; 0.631 at epsilon 1, 0.882 at epsilon 8,
           sgd 0.984, clip_only 0.882; commit 53724ff).
Results:   docs/results/privacy.md
"""

from configs.dpsgd import common
from robustdata import config_lib


def get_config(arg=None):
  config = config_lib.base_config()
  config.name = "dpsgd_digits"
  config.seed = 0
  config.method = "erm"

  config.data.name = "digits"         # N = 1258 train examples, so delta = 1e-5 < 1/N
  config.data.augment = ()

  config.model.name = "cnn"
  config.model.channels = (16, 32)
  config.model.dense = 64
  config.model.norm = "none"          # BatchNorm is refused under DP; 'group' also works

  config.optim.name = "sgd"
  config.optim.learning_rate = 0.1    # one step size for every mode (SGD diverges at 0.5)
  config.optim.momentum = 0.9
  config.optim.weight_decay = 0.0
  config.optim.schedule = "cosine"

  config.train.epochs = 20
  config.train.batch_size = 128       # expected batch: q = 128 / 1258, 10 steps per epoch
  config.train.eval_batch_size = 512
  config.train.log_every_steps = 10
  config.train.checkpoint_every_steps = 100

  config.policy.name = "poisson"      # must equal privacy.sampling for dp_sgd

  config.privacy.mode = "dp_sgd"
  config.privacy.clip_norm = 1.0
  config.privacy.target_epsilon = 3.0  # sigma calibrated over epochs * steps per epoch
  config.privacy.delta = 1e-5
  config.privacy.sampling = "poisson"
  config.privacy.accountant = "rdp"
  config.privacy.clipping = "ghost"  # book-keeping clipping: no per-example gradients
  config.privacy.prune_scope = "global"   # with prune_sparsity > 0: global magnitude masks,
  config.privacy.prune_start_epoch = 4    # first from the (private) weights after 4 epochs,
  config.privacy.prune_every_epochs = 4   # then every 4 epochs, ramping to the full sparsity

  config, smoke = common.apply_variant(config, arg, file="dpsgd/digits")
  if smoke:
    config.train.epochs = 2
  return config_lib.finalize(config)


def get_sweep():
  """The four modes at epsilon 1, 3, 8 and dp_sgd at epsilon 3 with 50-95% sparsity."""
  return common.sweep()
