"""Group up-sampling on SpuCo digits: every group repeated to the largest group's size each
epoch (SpuCo's UpSampleERM).

Command:   python -m experiments.main --config=configs/spuco/upsample_digits.py
           (sweep: configs/spuco/common.py `sweep()`; table: configs/campaigns/spurious.py)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~17 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.518 ± 0.060, average_accuracy
           0.943 ± 0.028 (seeds 0-2; docs/results/spurious.md gives the commit)
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("upsample", arg)
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
