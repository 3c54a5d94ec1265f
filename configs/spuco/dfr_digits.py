"""DFR on SpuCo digits: ERM, then the last layer refit on the penultimate features of the
group-labelled val split (group-balanced subsamples, L1 logistic regression, C by worst-group
accuracy on half the set, mean of 20 heads; Kirichenko et al. '22, SpuCo's DFR). The final ERM
model is refit (no selection by val, which DFR trains on); its numbers are kept as `erm_*`.

Command:   python -m experiments.main --config=configs/spuco/dfr_digits.py
           (sweep: configs/spuco/common.py `sweep()`; table: configs/campaigns/spurious.py)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~8 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.786 ± 0.035, average_accuracy
           0.890 ± 0.021 (seeds 0-2; docs/results/spurious.md gives the commit)
Results:   docs/results/spurious.md (spuco_digits)
"""

import ml_collections

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("dfr", arg)

  config.eval.select_by = ""         # DFR trains on val: report the final model, refit
  config.dfr = ml_collections.ConfigDict()
  config.dfr.num_models = 20
  config.dfr.c_grid = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
  config.dfr.standardize = True
  config.dfr.tune_fraction = 0.5
  config.dfr.held_out = "val"
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
