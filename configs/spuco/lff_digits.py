"""Learning from Failure on SpuCo digits (Nam et al. '20; SpuCo's end-to-end LfF): a biased
model trained with generalised cross-entropy (q = 0.7) beside the reported (debiased) model,
whose cross-entropy is weighted per example by W = CE_b / (CE_b + CE_d) from loss EMAs (0.7).
Uses no group labels for training; groups are used only for model selection and evaluation.

Command:   python -m experiments.main --config=configs/spuco/lff_digits.py
           (sweep: configs/spuco/common.py `sweep()`)
Variants:  `smoke` (a few epochs, for tests), default.
Setting:   2 classes (digits 0-4 / 5-9), background colour over the whole image
           (magnitude_large), correlation strength 0.95, small CNN (both models), Adam 1e-3
           for both, 30 epochs, selection by val worst-group.
Hardware:  2 shared CPU cores. Time: ~15 s of training (+~10 s start-up).
Expected:  test worst_group_accuracy 0.503 ± 0.112 (0.530 / 0.354 / 0.625), average_accuracy
           0.835 ± 0.067 (seeds 0-2, std over seeds); ERM with the same optimizer: 0.354 ± 0.030
           / 0.968.
Results:   docs/results/spurious.md (spuco_digits)
"""

import ml_collections

from configs.spuco import common
from robustdata import config_lib


def get_config(arg=None):
  config = common.spuco_digits("erm", arg)
  config.name = config.name.replace("spuco_erm_digits", "spuco_lff_digits")
  config.method = "lff"
  # Adam at 1e-3 for both models, as the LfF paper's Colored MNIST runs: with common.py's SGD
  # (lr 0.05, momentum 0.9) the debiased model fits the bias-conflicting examples by the
  # inverted colour (2 classes make it a perfect rule for them) and its worst group falls to 0.
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.momentum = 0.0
  config.lff = ml_collections.ConfigDict({
      "q": 0.7,    # GCE exponent of the biased model
      "ema": 0.7,  # decay of the per-example loss EMAs behind W(x)
  })
  return config_lib.finalize(config)


def get_sweep():
  """Difficulty x correlation strength x 3 seeds (dotted overrides, one run each)."""
  return common.sweep()
