"""ERM baseline: the small CNN on scikit-learn's embedded 8x8 digits.

Command:   python -m experiments.main --config=configs/baselines/erm_digits.py
Variants:  `smoke` (2 epochs, for tests), default (30 epochs).
Hardware:  2 CPU cores. Time: ~1 minute (default), ~10 s (smoke).
Expected:  test_accuracy >= 0.95 (measured 0.992 with seed 0, commit 7c4a374).
Results:   docs/results/baselines.md
"""

from robustdata import config_lib, validation


def get_config(arg=None):
  validation.parse_variants(arg, ("smoke",), "erm_digits")
  config = config_lib.base_config()
  config.name = "erm_digits"
  config.seed = 0
  config.method = "erm"

  config.data.name = "digits"
  config.data.augment = ()          # 8x8 digits: crops/flips change the digit identity

  config.model.name = "cnn"
  config.model.channels = (32, 64)  # conv widths; 8x8 -> 4x4 -> 2x2 after pooling
  config.model.dense = 128
  config.model.norm = "none"

  config.optim.name = "sgd"
  config.optim.learning_rate = 0.05
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.schedule = "cosine"

  config.train.epochs = 30
  config.train.batch_size = 64
  config.train.eval_batch_size = 512
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 200

  config.policy.name = "full"

  if arg == "smoke":
    config.name = "erm_digits_smoke"
    config.train.epochs = 2
  return config_lib.finalize(config)
