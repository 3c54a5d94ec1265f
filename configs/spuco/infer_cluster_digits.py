"""Group inference on SpuCo digits, clustering: k-means per class on the
reference's logits, 2-4 clusters chosen by silhouette.

A stage of its own (trainer 'group_inference'): restores the reference ERM (2 epochs, its own
run) and writes groups.npz + groups.json (partition, run ids, data fingerprint) into its run
directory; results.json scores the partition against the true groups.
Command:   python -m experiments.main --config=configs/spuco/infer_cluster_digits.py
Variants:  magnitude_large (default), variance_low, magnitude_small; smoke (under a minute).
Setting:   2 classes (digits 0-4 / 5-9), correlation strength 0.95, the reference a small CNN.
Hardware:  2 shared CPU cores. Time: ~30 s with the reference.
Expected:  adjusted_rand_index and minority_group_recall: see docs/results/spurious.md.
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from configs.spuco import inferred_common as inferred
from robustdata import validation


def get_config(arg=None):
  given = validation.parse_variants(arg, ("smoke", *common.DIFFICULTIES),
                                    "spuco/infer_cluster_digits.py",
                                    exclusive=(common.DIFFICULTIES,))
  difficulty = next((d for d in common.DIFFICULTIES if d in given), common.DIFFICULTIES[0])
  return inferred.inference_config("cluster", difficulty, smoke="smoke" in given)
