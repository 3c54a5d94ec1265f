"""Group-balanced batches (SpuCo's GroupBalanceBatchERM) on SpuCo digits with inferred groups:
ERM on batches drawn so that every inferred group is equally likely.

Stages:    reference ERM (2 epochs) -> group inference -> balanced ERM (30 epochs), each its own
           run directory (configs/spuco/inferred_common.py); other seeds reuse the first two.
Command:   python -m experiments.main --config=configs/spuco/balanced_inferred_digits.py:jtt
Variants:  jtt (default), cluster, spare, eiil, ssa; magnitude_large (default), variance_low,
           magnitude_small; seed0..seed2; smoke (under a minute).
Setting:   as groupdro_digits.py, policy group_balanced, method erm.
Hardware:  2 shared CPU cores. Time: ~1 minute for the chain.
Expected:  test worst_group_accuracy, seeds 0-2: magnitude_large the annotated balanced
           sampling's in every seed (0.559 ± 0.035); magnitude_small jtt 0.829 ± 0.045,
           cluster 0.721 ± 0.026, spare 0.855 ± 0.032, eiil 0.829 ± 0.045, ssa 0.820 ± 0.069
           (annotated 0.876 ± 0.007). Strength 0.99: docs/results/spurious.md.
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import inferred_common as inferred


def get_config(arg=None):
  return inferred.robust_config("group_balanced", arg, what="spuco/balanced_inferred_digits.py")


def get_sweep():
  return inferred.sweep("configs/spuco/balanced_inferred_digits.py")
