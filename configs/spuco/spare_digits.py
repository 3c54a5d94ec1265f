"""SPARE on SpuCo digits: importance sampling with weights |group|^(-power) within each class
over the groups a SPARE inference stage infers (per-class k-means on the early-stopped ERM
reference's softmax outputs, silhouette-chosen k), with that stage's per-class powers (2 where
a class's clusters are not well separated, else 1); validation and test score the true groups.

Stages:    reference ERM (2 epochs) -> SPARE group inference (configs/spuco/infer_spare_digits.py)
           -> SPARE training (30 epochs), each its own run directory; other seeds reuse the
           first two.
Command:   python -m experiments.main --config=configs/spuco/spare_digits.py
Variants:  magnitude_large (default), variance_low, magnitude_small; seed0..seed2; smoke.
Setting:   as erm_digits.py: 2 classes (digits 0-4 / 5-9), correlation strength 0.95, small CNN,
           SGD lr 0.05 m0.9, selection by val worst-group accuracy (true val groups).
Hardware:  2 shared CPU cores. Time: ~1 minute for the chain.
Expected:  test worst_group_accuracy 0.552, average_accuracy 0.973 (seed 0; ERM 0.323 /
           0.969); inferred powers [1, 1]. Other seeds and difficulties: docs/results/spurious.md.
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from configs.spuco import inferred_common as inferred
from robustdata import config_lib

SEEDS = inferred.SEEDS


def get_config(arg=None):
  c, smoke, difficulty = inferred.trained_base(arg, name="spuco_spare_digits",
                                               what="spuco/spare_digits.py")
  c.policy.name = "spare"
  c.policy.sampling_power = 1.0      # for classes the inference stage gives no power
  c.policy.inferred_powers = True    # the SPARE inference stage's per-class powers
  c.group_stage = inferred.inference_config("spare", difficulty, smoke=smoke)
  return config_lib.finalize(c)


def get_sweep():
  """Difficulty x seed (each chain's first two stages shared)."""
  return [f"configs/spuco/spare_digits.py:{d},seed{s}" for d in common.DIFFICULTIES[:2]
          for s in range(SEEDS)]
