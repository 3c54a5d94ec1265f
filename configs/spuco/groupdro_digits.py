"""GroupDRO on SpuCo digits: online group weights q <- q * exp(0.01 * group loss) on
group-balanced batches (SpuCo's GroupDRO; Sagawa et al.).

Command:   python -m experiments.main --config=configs/spuco/groupdro_digits.py
           (sweep: configs/spuco/common.py `sweep()`; table: configs/campaigns/spurious.py)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~20 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.523 ± 0.081, average_accuracy
           0.841 ± 0.097 (seeds 0-2; docs/results/spurious.md gives the commit)
Results:   docs/results/spurious.md (spuco_digits)
"""

import ml_collections

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("groupdro", arg)

  config.groupdro = ml_collections.ConfigDict()
  config.groupdro.step_size = 0.01   # SpuCo's group-weight step size
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
