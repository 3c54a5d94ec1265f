"""PDE on SpuCo digits: warm up on the group-balanced subset (every group subsampled to the
smallest), then add 25 random unused examples every 2 epochs from epoch 20 on, with the LR x0.1
at the first expansion (Deng*, Yang*, et al., NeurIPS'23; spec §4).

Command:   python -m experiments.main --config=configs/spuco/pde_digits.py
           (sweep: configs/spuco/common.py `sweep()`; table: configs/campaigns/spurious.py)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~8 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.690 ± 0.035, average_accuracy
           0.828 ± 0.027 (seeds 0-2; docs/results/spurious.md gives the commit)
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("pde", arg)

  config.policy.add_start = 20       # warm-up epochs on the balanced subset
  config.policy.add_interval = 2
  config.policy.add_num = 25
  config.optim.schedule = "step"     # the LR drop when expansion starts
  config.optim.milestones = (20,)
  config.optim.gamma = 0.1
  config.train.epochs = 40
  if arg == "smoke":
    config.policy.add_start, config.policy.add_interval, config.policy.add_num = 2, 1, 25
    config.optim.milestones = (2,)
    config.train.epochs = 4
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
