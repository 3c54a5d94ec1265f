"""Correct-n-Contrast on SpuCo digits (Zhang et al. '22; SpuCo's CorrectNContrastTrain): the
early-stopped ERM reference's predicted class is each train example's inferred spurious
attribute (CnC inference: groups (class, prediction)); a fresh model trains on
(1 - 0.5) CE + 0.5 L_con, L_con contrasting penultimate features (tau 0.05) of anchors (examples
the reference classifies correctly) with same-class examples it misclassifies (positives) and
other-class examples it predicts as the anchor's class (negatives); validation and test score
the true groups.

Stages:    reference ERM (2 epochs) -> CnC group inference -> CnC training (30 epochs), each its
           own run directory (configs/spuco/inferred_common.py); other seeds reuse the first two.
Command:   python -m experiments.main --config=configs/spuco/cnc_digits.py
Variants:  magnitude_large (default), variance_low, magnitude_small; seed0..seed2; smoke.
Setting:   as erm_digits.py (2 classes, digits 0-4 / 5-9, correlation strength 0.95, small CNN,
           selection by val worst-group accuracy on the true val groups), SGD lr 0.01 m0.9,
           batches of 32 anchors + 32 positives + 32 negatives (policy 'cnc'; 33 steps/epoch).
Hardware:  2 shared CPU cores. Time: ~1 minute for the chain.
Expected:  test worst_group_accuracy 0.582 ± 0.027 (0.548 / 0.615 / 0.583), average_accuracy
           0.907 ± 0.042 (seeds 0-2, std over seeds; 990 steps, 94k examples seen); ERM with the
           same settings (lr 0.01, batch 96, 30 epochs: 360 steps): 0.131 ± 0.073 / 0.952, ERM
           for as many steps (83 epochs): 0.368 ± 0.049 / 0.961; the same batches with
           contrastive_weight 0 (seed 0): 0.688 / 0.915.
Results:   docs/results/spurious.md (spuco_digits)
"""

import ml_collections

from configs.spuco import common
from configs.spuco import inferred_common as inferred
from robustdata import config_lib

SEEDS = inferred.SEEDS


def inference_config(difficulty: str, *, smoke: bool) -> ml_collections.ConfigDict:
  """CnC's inference stage: the reference's predicted class as the spurious attribute."""
  stage = inferred.inference_config("jtt", difficulty, smoke=smoke)  # the same reference
  stage.name = "spuco_infer_cnc_digits" + ("_smoke" if smoke else "")
  stage.inference.method = "cnc"
  return stage


def get_config(arg=None):
  c, smoke, difficulty = inferred.trained_base(arg, name="spuco_cnc_digits",
                                               what="spuco/cnc_digits.py")
  c.method = "cnc"
  c.cnc = ml_collections.ConfigDict({
      "contrastive_weight": 0.5,  # lam: loss = (1 - lam) CE + lam L_con
      "temperature": 0.05,        # tau of L_con (cosine similarities / tau)
  })
  # SGD at lr 0.01, not common.py's 0.05: at 0.05 the contrastive gradient (scaled by 1 / tau)
  # drives the penultimate ReLU features to zero within the first epoch and the model collapses
  # to one class (L_con stays at log 64, worst group 0).
  c.optim.learning_rate = 0.01
  c.policy.name = "cnc"
  c.train.batch_size = 96       # anchors = batch_size - num_positives - num_negatives = 32
  c.policy.num_positives = 32   # same class, another inferred attribute
  c.policy.num_negatives = 32   # another class, the anchors' inferred attribute
  c.group_stage = inference_config(difficulty, smoke=smoke)
  return config_lib.finalize(c)


def get_sweep():
  """Difficulty x seed (each chain's first two stages shared)."""
  return [f"configs/spuco/cnc_digits.py:{d},seed{s}" for d in common.DIFFICULTIES[:2]
          for s in range(SEEDS)]
