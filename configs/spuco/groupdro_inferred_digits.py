"""GroupDRO on SpuCo digits with inferred groups: the train groups come from a group-inference
stage (JTT errors, clustering, SPARE or EIIL on an early-stopped ERM reference, or SSA from the
val split's group labels) instead of the annotations; validation and test still score the true
groups (SpuCo's "groups inferred" rows).

Stages:    reference ERM (2 epochs) -> group inference -> GroupDRO (30 epochs), each its own run
           directory (configs/spuco/inferred_common.py); other seeds reuse the first two.
Command:   python -m experiments.main --config=configs/spuco/groupdro_inferred_digits.py:cluster
Variants:  jtt (default), cluster, spare, eiil, ssa; magnitude_large (default), variance_low,
           magnitude_small; seed0..seed2; smoke (under a minute).
Setting:   as groupdro_digits.py: 2 classes (digits 0-4 / 5-9), correlation strength 0.95,
           small CNN, selection by val worst-group accuracy (true val groups).
Hardware:  2 shared CPU cores. Time: ~1 minute for the chain.
Expected:  test worst_group_accuracy, seeds 0-2: magnitude_large the annotated GroupDRO's in
           every seed (0.523 ± 0.081, every method infers the true groups); magnitude_small
           jtt 0.811 ± 0.063, cluster 0.722 ± 0.055, spare 0.823 ± 0.026, eiil 0.811 ± 0.063,
           ssa 0.771 ± 0.053 (annotated 0.842 ± 0.029). Strength 0.99: docs/results/spurious.md.
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import inferred_common as inferred


def get_config(arg=None):
  return inferred.robust_config("groupdro", arg, what="spuco/groupdro_inferred_digits.py")


def get_sweep():
  return inferred.sweep("configs/spuco/groupdro_inferred_digits.py")
