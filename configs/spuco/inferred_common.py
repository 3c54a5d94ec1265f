"""Builders of the inferred-group chains on SpuCo digits (not a config itself): three stages,
each a run of its own.

  reference (supervised ERM, early-stopped)  ->  groups (group_inference)  ->  robust method

The robust run holds the inference stage's whole config in `config.group_stage`, which holds
the reference's in `config.group_stage.reference`; runs with other seeds or methods on the same
inference reuse the first two stages.

Variant tokens (comma-separated): `smoke`; an inference method (`jtt` [default], `cluster`,
`spare`, `eiil`, `ssa`); a difficulty (`magnitude_large` [default], `variance_low`,
`magnitude_small`); `seed<s>` (s = 0, 1, 2: the robust run's seed).
"""

from __future__ import annotations

import ml_collections

from configs.spuco import common
from robustdata import config_lib, validation
from robustdata.spurious import infer_stage

INFERENCE = ("jtt", "cluster", "spare", "eiil")  # the chains' get_sweep()
# Every inference method of a variant: SSA also reads the val split's group labels.
METHODS = (*INFERENCE, "ssa")
SEEDS = 3
TOKENS = ("smoke", *METHODS, *common.DIFFICULTIES, *(f"seed{s}" for s in range(SEEDS)))
REFERENCE_EPOCHS = 2  # the early-stopped ERM (jtt_digits.py's stage1_epochs)
# Per method: config.inference fields over INFERENCE_DEFAULTS.
INFERENCE_FIELDS = {"jtt": {}, "cluster": {"features": "logits", "max_clusters": 4},
                    "spare": {"max_clusters": 4}, "eiil": {"eiil_steps": 2000, "eiil_lr": 0.01},
                    # the whole val split group-labelled; SpuCo's tau
                    "ssa": {"ssa_labelled_fraction": 1.0, "ssa_threshold": 0.95,
                            "ssa_steps": 500}}


def parse(arg, what: str) -> tuple[bool, str, str, int]:
  """(smoke, inference method, difficulty, seed) of a variant `arg`."""
  given = validation.parse_variants(arg, TOKENS, what, exclusive=(
      METHODS, common.DIFFICULTIES, [f"seed{s}" for s in range(SEEDS)]))
  method = next((m for m in METHODS if m in given), "jtt")
  difficulty = next((d for d in common.DIFFICULTIES if d in given), common.DIFFICULTIES[0])
  seed = next((s for s in range(SEEDS) if f"seed{s}" in given), 0)
  return "smoke" in given, method, difficulty, seed


def trained_base(arg, *, name: str, what: str) -> tuple[ml_collections.ConfigDict, bool, str]:
  """(config, smoke, difficulty): the ERM base of a method that chains its own inference stage
  (spare_digits, cnc_digits) for variant tokens smoke, a difficulty and seed0..seed2, named
  `name` (+ '_smoke')."""
  given = validation.parse_variants(
      arg, ("smoke", *common.DIFFICULTIES, *(f"seed{s}" for s in range(SEEDS))), what,
      exclusive=(common.DIFFICULTIES, [f"seed{s}" for s in range(SEEDS)]))
  smoke = "smoke" in given
  difficulty = next((d for d in common.DIFFICULTIES if d in given), common.DIFFICULTIES[0])
  c = _base("erm", smoke, difficulty)
  c.name = name + ("_smoke" if smoke else "")
  c.seed = next((s for s in range(SEEDS) if f"seed{s}" in given), 0)
  return c, smoke, difficulty


def _base(method: str, smoke: bool, difficulty: str) -> ml_collections.ConfigDict:
  config = common.spuco_digits(method, "smoke" if smoke else None)
  config.data.difficulty = difficulty
  return config


def reference_config(difficulty: str, *, smoke: bool) -> ml_collections.ConfigDict:
  """The reference model: ERM stopped after REFERENCE_EPOCHS (1 in smoke), its final model."""
  c = _base("erm", smoke, difficulty)
  c.name = "spuco_reference_digits" + ("_smoke" if smoke else "")
  c.train.epochs = 1 if smoke else REFERENCE_EPOCHS
  c.eval.select_by = ""  # the inference reads the final (early-stopped) model
  return config_lib.finalize(c)


def inference_config(method: str, difficulty: str, *, smoke: bool) -> ml_collections.ConfigDict:
  """The group-inference stage of `method` on the reference's train split."""
  c = _base("erm", smoke, difficulty)
  c.trainer = "group_inference"
  c.name = f"spuco_infer_{method}_digits" + ("_smoke" if smoke else "")
  c.train.epochs = 1
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 1
  c.eval.select_by = ""
  defaults = dict(infer_stage.INFERENCE_DEFAULTS)
  if method == "ssa":
    defaults.update(infer_stage.SSA_DEFAULTS)
  c.inference = ml_collections.ConfigDict(defaults)
  c.inference.method = method
  c.inference.update(INFERENCE_FIELDS[method])
  if smoke and method == "ssa":
    c.inference.ssa_steps = 100
  elif smoke:
    c.inference.eiil_steps = 200
  c.reference = reference_config(difficulty, smoke=smoke)
  return config_lib.finalize(c)


# The robust methods that read train groups: name -> (config.method, config.policy.name).
ROBUST = {"groupdro": ("groupdro", "group_balanced"), "group_balanced": ("erm", "group_balanced"),
          "upsample": ("erm", "upsample")}


def robust_config(robust: str, arg, *, what: str) -> ml_collections.ConfigDict:
  """`robust` (a key of ROBUST) trained on the groups of the inference variant of `arg`."""
  smoke, method, difficulty, seed = parse(arg, what)
  c = _base("erm", smoke, difficulty)
  c.method, c.policy.name = ROBUST[robust]
  c.name = f"spuco_{robust}_{method}_inferred_digits" + ("_smoke" if smoke else "")
  c.seed = seed
  if robust == "groupdro":
    c.groupdro = ml_collections.ConfigDict({"step_size": 0.01})
  c.group_stage = inference_config(method, difficulty, smoke=smoke)
  return config_lib.finalize(c)


def sweep(config_file: str, *, seeds: int = SEEDS, difficulties=common.DIFFICULTIES[:2],
          methods=INFERENCE) -> list[str]:
  """Variants: inference method x difficulty x seed (each chain's first two stages shared)."""
  return [f"{config_file}:{m},{d},seed{s}" for m in methods for d in difficulties
          for s in range(seeds)]
