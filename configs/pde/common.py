"""The shared synthetic setup of the PDE paper (spec §4) for the configs here (not a config).

Patch data: 3 patches of 50 dims (core v_c*y/5, spurious v_s*a, Gaussian noise 1/8), a = y with
probability 0.98, 10k train / 2k val / 10k test; the two-layer cubic conv (2 x 20 filters,
init x0.1); full-batch gradient descent (`full_batch` for ERM, `pde` with the batch as large as
the train split). Results add `core_alignment` / `spurious_alignment` (max over filters of
|<w, v_c>| and |<w, v_s>|).
"""

import ml_collections

from robustdata import config_lib, validation


def pde_synthetic(method: str, arg=None) -> ml_collections.ConfigDict:
  """An unlocked config of `method` ('erm' or 'pde'); `arg`: None, 'smoke' or 'case2'."""
  if method not in ("erm", "pde"):
    raise ValueError(f"unknown method {method!r}; allowed: ['erm', 'pde']")
  validation.parse_variants(arg, ("smoke", "case2"), f"pde/synthetic_{method}",
                            exclusive=(("smoke", "case2"),))
  config = config_lib.base_config()
  config.name = f"pde_synthetic_{method}"
  config.seed = 0
  config.method = "erm"

  config.data.name = "pde_synthetic"
  config.data.case = 1                  # 1: core 1/5, spurious 1 (ERM learns the spurious)
  config.data.n_train = 10000
  config.data.n_val = 2000
  config.data.n_test = 10000
  config.data.spurious_correlation = 0.98
  config.data.seed = 0                  # v_c, v_s and the samples

  config.model.name = "pde_conv"
  config.model.num_filters = 20         # per class
  config.model.patch_dim = 50
  config.model.init_scale = 0.1

  config.optim.name = "sgd"
  config.optim.weight_decay = 0.0
  config.optim.schedule = "constant"

  config.train.batch_size = 10000       # full batch: one step per epoch
  config.train.eval_batch_size = 10000
  config.train.log_every_steps = 100
  config.train.checkpoint_every_steps = 100000
  config.train.progress = "log"

  if method == "erm":                   # the paper: SGD lr 0.1, 401 full-batch steps
    config.policy.name = "full_batch"
    config.optim.learning_rate = 0.1
    config.optim.momentum = 0.0
    config.train.epochs = 401
  else:                                 # 801 steps on the balanced set, then +100 per 101 steps
    config.policy.name = "pde"
    config.policy.add_start = 801
    config.policy.add_interval = 101
    config.policy.add_num = 100
    config.optim.learning_rate = 0.03
    config.optim.momentum = 0.9
    config.train.epochs = 801 + 5 * 101
  config.train.eval_every_epochs = 100

  if arg == "case2":
    config.name += "_case2"
    config.data.case = 2                # core 1, spurious 1/5: ERM learns the core too
  elif arg == "smoke":
    config.name += "_smoke"
    config.data.n_train, config.data.n_val, config.data.n_test = 1000, 200, 1000
    config.train.batch_size = config.train.eval_batch_size = 1000
    config.train.epochs = 30
    config.train.eval_every_epochs = 10
    config.train.progress = "none"
    if method == "pde":
      config.policy.add_start, config.policy.add_interval, config.policy.add_num = 20, 5, 50
  return config
