"""Quickstart: train the small CNN on the embedded digits and print a results table.

Command:   python -m experiments.main --config=configs/quickstart.py
Variants:  `smoke` (1 epoch, ~10 s), default (15 epochs).
Hardware:  a laptop CPU (2 cores). Time: ~40 s including start-up (default).
Expected:  test_accuracy ~0.98 (>= 0.95); no download, the data ships with scikit-learn.
Results:   docs/results/baselines.md (the same model and data as configs/baselines/erm_digits.py)
"""

from robustdata import config_lib, validation


def get_config(arg=None):
  validation.parse_variants(arg, ("smoke",), "quickstart")
  config = config_lib.base_config()
  config.name = "quickstart"
  config.seed = 0

  config.data.name = "digits"       # scikit-learn's 1,797 real 8x8 digits, embedded
  config.model.name = "cnn"
  config.model.channels = (32, 64)
  config.model.dense = 128
  config.optim.learning_rate = 0.05
  config.optim.schedule = "cosine"
  config.train.epochs = 15
  config.train.batch_size = 64
  config.train.log_every_steps = 20
  config.policy.name = "full"

  if arg == "smoke":
    config.name = "quickstart_smoke"
    config.train.epochs = 1
  return config_lib.finalize(config)
