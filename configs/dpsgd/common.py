"""Shared pieces of the DP-SGD study configs (spec §6): the variants and the sweep."""

from __future__ import annotations

from robustdata import validation

VARIANTS = {
    "": {},
    "eps1": {"privacy.target_epsilon": 1.0},
    "eps8": {"privacy.target_epsilon": 8.0},
    "sgd": {"privacy.mode": "sgd"},
    "clip_only": {"privacy.mode": "clip_only"},
    "noise_only": {"privacy.mode": "noise_only"},
    "sparsity90": {"privacy.prune_sparsity": 0.9},
    "dp_then_sgd": {"privacy.switch_epoch": 10, "privacy.switch_to_mode": "sgd"},
    "sgd_then_dp": {"privacy.mode": "sgd", "privacy.switch_epoch": 10,
                    "privacy.switch_to_mode": "dp_sgd"},
}


def apply_variant(config, arg, *, file: str):
  """Applies `arg` = 'variant', 'smoke' or 'variant,smoke' to an unlocked config."""
  named = tuple(sorted(VARIANTS)[1:])
  tokens = validation.parse_variants(arg, named + ("smoke",), file, exclusive=(named,))
  smoke = "smoke" in tokens
  names = sorted(tokens - {"smoke"})
  variant = names[0] if names else ""
  for dotted, value in VARIANTS[variant].items():
    section, field = dotted.split(".")
    config[section][field] = value
  if variant:
    config.name += "_" + variant
  if smoke:
    config.name += "_smoke"
  return config, smoke


def sweep():
  """The issue-3 table: the four modes at epsilon 1, 3, 8 (sgd and clip_only add no noise, so
  one run each) and dp_sgd at epsilon 3 with global magnitude pruning at 50-95% sparsity."""
  runs = [{"privacy.mode": "sgd"}, {"privacy.mode": "clip_only"}]
  for eps in (1.0, 3.0, 8.0):
    for mode in ("noise_only", "dp_sgd"):
      runs.append({"privacy.mode": mode, "privacy.target_epsilon": eps})
  for sparsity in (0.5, 0.8, 0.9, 0.95):
    runs.append({"privacy.mode": "dp_sgd", "privacy.target_epsilon": 3.0,
                 "privacy.prune_sparsity": sparsity})
  return runs
