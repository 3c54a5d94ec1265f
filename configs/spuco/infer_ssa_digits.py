"""Group inference on SpuCo digits, SSA's inference: a predictor of the background colour
trained on the group-labelled val split, retrained with confident (>= 0.95) pseudo-labels of
the other train folds, labels each train example; groups (class, predicted colour).

A stage of its own (trainer 'group_inference'); it keeps the chain's reference ERM stage (2
epochs, shared with the other infer_*_digits configs) though SSA's predictor reads the raw
inputs (`ssa_input='inputs'`; 'features' reads the reference's). Writes groups.npz +
groups.json into its run directory; results.json scores the partition against the true groups.
Command:   python -m experiments.main --config=configs/spuco/infer_ssa_digits.py
Variants:  magnitude_large (default), variance_low, magnitude_small; smoke (under a minute).
Setting:   2 classes (digits 0-4 / 5-9), correlation strength 0.95; all 359 val examples
           group-labelled (half fit the predictor, half select it), 3 train folds, an MLP
           (64 hidden) on the flattened 8x8x3 inputs, 500 SGD steps per predictor.
Hardware:  2 shared CPU cores. Time: ~25 s with the reference (~13 s of inference).
Expected:  adjusted_rand_index / minority_group_recall / precision: magnitude_large and
           variance_low 1.000 / 1.000 / 1.000; magnitude_small 0.989 / 0.909 / 0.980.
Results:   docs/results/spurious.md (spuco_digits)
"""

from configs.spuco import common
from configs.spuco import inferred_common as inferred
from robustdata import validation


def get_config(arg=None):
  given = validation.parse_variants(arg, ("smoke", *common.DIFFICULTIES),
                                    "spuco/infer_ssa_digits.py",
                                    exclusive=(common.DIFFICULTIES,))
  difficulty = next((d for d in common.DIFFICULTIES if d in given), common.DIFFICULTIES[0])
  return inferred.inference_config("ssa", difficulty, smoke="smoke" in given)
