"""JTT on SpuCo digits: ERM for `stage1_epochs`, the error set of that model on train, then a
fresh model on all data with the error set up-sampled `upweight` times (Liu et al. '21). Needs
no group labels for training; groups are used only for model selection and evaluation.

Command:   python -m experiments.main --config=configs/spuco/jtt_digits.py
           (sweep: configs/spuco/common.py `sweep()`; table: configs/campaigns/spurious.py)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~21 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.567 ± 0.030, average_accuracy
           0.927 ± 0.035 (seeds 0-2; docs/results/spurious.md gives the commit)
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("jtt", arg)

  config.policy.stage1_epochs = 2    # identification model: early-stopped ERM
  config.policy.upweight = 20        # lambda_up (integer: repetitions of the error set)
  config.policy.mode = "upsample"    # or 'upweight' (loss weight instead of repetition)
  if arg == "smoke":
    config.policy.stage1_epochs = 1
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
