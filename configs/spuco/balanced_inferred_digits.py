"""Group-balanced batches (SpuCo's GroupBalanceBatchERM) on SpuCo digits with inferred groups:
ERM on batches drawn so that every inferred group is equally likely.

Stages:    reference ERM (2 epochs) -> group inference -> balanced ERM (30 epochs), each its own
           run directory (configs/spuco/inferred_common.py); other seeds reuse the first two.
Command:   python -m experiments.main --config=configs/spuco/balanced_inferred_digits.py:jtt
Variants:  jtt (default), cluster, spare, eiil; magnitude_large (default), variance_low,
           magnitude_small; seed0..seed2; smoke (under a minute).
Setting:   as groupdro_digits.py, policy group_balanced, method erm.
Hardware:  2 shared CPU cores. Time: ~1 minute for the chain.
Expected:  see docs/results/spurious.md (to be measured).
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import inferred_common as inferred


def get_config(arg=None):
  return inferred.robust_config("group_balanced", arg, what="spuco/balanced_inferred_digits.py")


def get_sweep():
  return inferred.sweep("configs/spuco/balanced_inferred_digits.py")
