"""Spurious-correlation objectives: GroupDRO (per-example coefficients from the online group
weights) and DFR (ERM training, then a last-layer refit in `finalize`)."""

from __future__ import annotations

import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from robustdata.evals import groups as group_evals
from robustdata.registry import OBJECTIVES, ConfigError, field_reader
from robustdata.spurious import dfr, groupdro
from robustdata.spurious.alignment import ReportsAlignment
from robustdata.train.objectives import Objective


@OBJECTIVES.register("groupdro")
class GroupDRO(ReportsAlignment, Objective):
  """q <- normalise(q * exp(step_size * group mean loss)); coefficients make the plain rule's
  loss equal sum_g q_g * mean loss_g (times the policy weight, 1 unless a policy sets it).

  Config: `config.groupdro.step_size` (default 0.01, SpuCo's value).
  """

  DEFAULTS = {"step_size": 0.01}

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    super().__init__(config, num_groups=num_groups, num_classes=num_classes)
    if num_groups <= 0:
      raise ConfigError("config.method='groupdro' needs group labels (config.data.name must "
                        "name a source with groups)")
    section = config.get("groupdro", None) if hasattr(config, "get") else None
    self.step_size = float(field_reader(section, self.DEFAULTS)("step_size"))

  def init(self):
    return {"q": groupdro.init_group_weights(self.num_groups)}

  def coefficients(self, losses, batch, method_state):
    q, coef, group_loss = groupdro.groupdro_update(
        method_state["q"], losses, batch["groups"], batch["mask"], step_size=self.step_size)
    metrics = {"groupdro_q_max": jnp.max(q), "groupdro_q_min": jnp.min(q),
               "group_loss_max": jnp.max(group_loss)}
    return coef * batch["weight"], {"q": q}, metrics


@OBJECTIVES.register("dfr")
class DeepFeatureReweighting(ReportsAlignment, Objective):
  """DFR: ERM training (coefficients = policy weights), then `finalize` refits the last layer
  on the penultimate features of the group-labelled held-out split (`dfr.held_out`, 'val') with
  `robustdata.spurious.dfr.fit_dfr` and reports the refit head on test.

  results.json: `worst_group_accuracy`, `average_accuracy`, `group_accuracy`, `worst_group`,
  `test_accuracy` (and `spurious_accuracy`) are the DFR head's; the final ERM model's are kept
  as `erm_*`; `test_loss` stays the ERM model's. Config section `config.dfr` (optional):
  num_models 20, c_grid SpuCo's grid, standardize True, tune_fraction 0.5, held_out 'val'.
  """

  DEFAULTS = {"num_models": 20, "c_grid": dfr.C_GRID, "standardize": True,
              "tune_fraction": 0.5, "held_out": "val"}

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    super().__init__(config, num_groups=num_groups, num_classes=num_classes)
    if num_groups <= 0:
      raise ConfigError("config.method='dfr' needs group labels on the held-out split "
                        "(config.data.name must name a source with groups)")
    section = config.get("dfr", None) if hasattr(config, "get") else None
    self.cfg = dict(self.DEFAULTS)
    for key in (section.keys() if section is not None else ()):
      if key not in self.DEFAULTS:
        raise ConfigError(f"config.dfr.{key} is not a field of DFR; allowed fields: "
                          f"{sorted(self.DEFAULTS)}")
      self.cfg[key] = section[key]
    if self.cfg["held_out"] not in ("val", "train"):
      raise ConfigError(f"config.dfr.held_out={self.cfg['held_out']!r}; allowed values: "
                        "['val', 'train']")
    if int(self.cfg["num_models"]) < 1:
      raise ConfigError(f"config.dfr.num_models={self.cfg['num_models']} must be >= 1")
    if not 0.0 < float(self.cfg["tune_fraction"]) < 1.0:
      raise ConfigError(f"config.dfr.tune_fraction={self.cfg['tune_fraction']} must be in (0, 1)")

  def prepare(self, train) -> None:
    self.train_groups = train.groups  # the groups training reads (inferred: config.group_stage)

  def coefficients(self, losses, batch, method_state):
    return batch["weight"], method_state, {}

  def finalize(self, run_ctx) -> dict[str, Any]:
    data = run_ctx.data  # the annotated splits
    held_name = self.cfg["held_out"]
    held = data.splits()[held_name]
    held_groups, held_num_groups = held.groups, data.num_groups
    if held_name == "train" and getattr(self, "train_groups", None) is not None:
      held_groups, held_num_groups = self.train_groups, self.num_groups
    if len(held) == 0 or held_groups is None:
      raise ConfigError(f"config.dfr.held_out={held_name!r}: that split is empty or has no group "
                        "labels; DFR needs a group-labelled held-out set")
    test = data.test
    t0 = time.time()
    _, held_features = run_ctx.logits_and_features(held_name)
    test_logits, test_features = run_ctx.logits_and_features("test")
    head = dfr.fit_dfr(held_features, held.y, held_groups, num_groups=held_num_groups,
                       rng=np.random.default_rng([int(run_ctx.config.seed), 0xDF2]),
                       c_grid=tuple(float(c) for c in self.cfg["c_grid"]),
                       num_models=int(self.cfg["num_models"]),
                       standardize=bool(self.cfg["standardize"]),
                       tune_fraction=float(self.cfg["tune_fraction"]))
    report = dict(train_group_counts=run_ctx.train_group_counts, num_groups=data.num_groups,
                  group_names=data.group_names or None, spurious=test.spurious)
    erm = group_evals.group_report(test_logits.argmax(-1), test.y, test.groups, **report)
    refit = group_evals.group_report(head.predict(test_features), test.y, test.groups, **report)
    out: dict[str, Any] = {f"erm_{k}": v for k, v in erm.items() if k != "accuracy"}
    out["erm_test_accuracy"] = erm["accuracy"]
    out.update({k: v for k, v in refit.items() if k != "accuracy"})
    out["test_accuracy"] = refit["accuracy"]
    out.update({"dfr_c": head.c, "dfr_held_out_size": int(len(held)),
                "dfr_time_s": time.time() - t0})
    out.update(super().finalize(run_ctx))
    return out
