"""The shared SpuCo-digits setup of the configs in this folder (not a config itself).

SpuCoMNIST's construction on scikit-learn's 8x8 digits with two classes (digits 0-4 vs 5-9, a
harder core feature than the coloured background), a small CNN, SGD, and model selection by
validation worst-group accuracy. Each method file changes only its policy / objective fields.
"""

import ml_collections

from robustdata import config_lib, validation

# method -> (config.method, config.policy.name)
METHODS = {
    "erm": ("erm", "full"),
    "upsample": ("erm", "upsample"),
    "groupdro": ("groupdro", "group_balanced"),
    "jtt": ("erm", "jtt"),
    "dfr": ("dfr", "full"),
    "pde": ("erm", "pde"),
    "balanced": ("erm", "group_balanced"),
}
DIFFICULTIES = ("magnitude_large", "variance_low", "magnitude_small")
STRENGTHS = (0.9, 0.95)


def spuco_digits(method: str, arg=None) -> ml_collections.ConfigDict:
  """An unlocked config of `method` on spuco_digits; `arg` 'smoke' shrinks it for tests."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; allowed: {sorted(METHODS)}")
  validation.parse_variants(arg, ("smoke",), f"spuco/{method}_digits")
  config = config_lib.base_config()
  config.name = f"spuco_{method}_digits"
  config.seed = 0
  config.method, config.policy.name = METHODS[method]

  config.data.name = "spuco_digits"
  config.data.classes = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))  # 2 classes -> 4 groups
  config.data.spurious_correlation_strength = 0.95  # train and val; test is balanced
  config.data.difficulty = "magnitude_large"        # the whole background is coloured
  config.data.val_fraction = 0.2
  config.data.test_fraction = 0.2
  config.data.split_seed = 0
  config.data.seed = 0                               # colours and masks
  config.data.augment = ()

  config.model.name = "cnn"
  config.model.channels = (16, 32)
  config.model.dense = 64
  config.model.norm = "none"

  config.optim.name = "sgd"
  config.optim.learning_rate = 0.05
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.schedule = "constant"

  config.train.epochs = 30
  config.train.batch_size = 64
  config.train.eval_batch_size = 512
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 1000
  config.train.progress = "log"

  config.eval.select_by = "val_worst_group_accuracy"

  if arg == "smoke":
    config.name += "_smoke"
    config.train.epochs = 3
    config.train.progress = "none"
  return config


def sweep(seeds=(0, 1, 2)) -> list[dict]:
  """Dotted overrides over difficulty x correlation strength x seed, each its own run."""
  return [{"data.difficulty": d, "data.spurious_correlation_strength": s, "seed": seed}
          for d in DIFFICULTIES for s in STRENGTHS for seed in seeds]
