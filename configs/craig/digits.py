"""CRAIG on embedded digits: a 20% per-class FL coreset on softmax - onehot proxies, reselected
every epoch (lag 1), trained with mean-1 cluster-size weights (spec §2).

Variants: `hard` (the larger, noisier digits task of configs/crest/common.py), `b10` (a 10%
coreset, the CREST paper's step budget), `smoke` (2 epochs); comma-separated.
Baselines at the same budget: configs/crest/digits.py:random and :full.

Command:   python -m experiments.main --config=configs/craig/digits.py
Hardware:  2 CPU cores (the table's runs pinned to one). Time: ~8-15 s (digits), ~1 min (hard).
Expected:  test_accuracy 0.979 ± 0.007 (digits, seeds 0, 1), 0.992 (hard, seed 0), 0.987 ± 0.003
           (hard,b10, seeds 0-2).
Results:   docs/results/data-efficiency.md (CREST, CRAIG and random subsets)
"""

from configs.crest import common
from robustdata import config_lib


def get_config(arg=None):
  tokens = common.parse(arg, ("hard", "smoke", "b10"), "craig/digits")
  config = common.digits("craig_digits", task="hard" if "hard" in tokens else "digits",
                         smoke="smoke" in tokens)
  config.policy.name = "craig"
  config.policy.fraction = 0.1 if "b10" in tokens else common.BUDGET  # = the step budget
  config.policy.lag = 1                   # reselect every epoch
  config.policy.start_epoch = 0
  config.policy.kernel = "craig"          # CRAIG's own max d - d_ij similarity
  config.policy.equal_num = True
  config.policy.shuffle = True
  return config_lib.finalize(config)
