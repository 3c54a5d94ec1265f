"""Gradient matching (Witches' Brew) with the substitute retrained during crafting, against a
victim trained from scratch, on the embedded captioned shapes as a 16-class task.

Paper:     Friendly Noise against Adversarial Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): the
           attacks are rendered ineffective with only a slight drop in clean accuracy.
Stages:    as configs/friendly_noise/gm_shapes.py (substitute CNN, 250 signed-Adam iterations at
           eps = 16/255, 160 poisons of class 0, victim CNN from scratch with another seed), but
           the substitute is retrained from scratch on the current poisons every 50 iterations
           and the target gradient recomputed (Sleeper Agent's schedule; Witches' Brew studies
           retraining as an option): poisons matched to one set of weights do not carry over
           to a victim from another initialisation (docs/results/poisoning.md, target 314).
Command:   python -m experiments.main \
             --config=configs/friendly_noise/gm_shapes_retrain.py:none,trial0
Variants:  a defence or `clean` (no poisons applied), trial0..trial9, seed0..seed2, smoke
           (common.py).
Sweep:     python -m experiments.sweep --config=configs/friendly_noise/gm_shapes_retrain.py \
             --workdir=runs/fn    (10 targets x 3 victim seeds x the control and 6 defences)
Hardware:  2 CPU cores.
Time:      ~3.5 minutes of crafting per target (4 retrainings); a victim ~35 s (~65 s with
           Friendly Noise).
Expected:  undefended targeted_asr 0.50 over the 10 targets x 3 seeds (gm_shapes.py: 0.33):
           6 of 10 targets flip in at least one victim (gm_shapes.py: 4).
Results:   docs/results/poisoning.md
"""

from configs.friendly_noise import common, gm_shapes

ATTACK = dict(gm_shapes.ATTACK, retrain_every=50)


def get_config(arg=None):
  return common.victim_config(ATTACK, "shapes", arg, what="friendly_noise/gm_shapes_retrain.py")


def get_sweep():
  return common.sweep("configs/friendly_noise/gm_shapes_retrain.py", trials=10, seeds=3,
                      defences=(common.CONTROL, *common.DEFENCES))
