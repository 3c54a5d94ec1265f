"""Group-balanced batches on SpuCo digits (SpuCo's GroupBalanceBatchERM): ERM on batches drawn
so that every annotated train group is equally likely.

Command:   python -m experiments.main --config=configs/spuco/balanced_digits.py
           (table: configs/campaigns/spurious.py `:grid`)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~15 s of training (+~10 s start-up).
Expected:  test worst_group_accuracy 0.559 ± 0.035, average_accuracy 0.960 ± 0.015 (seeds 0-2;
           magnitude_small 0.876 ± 0.007 / 0.937 ± 0.018).
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("balanced", arg)
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
