"""Spurious-correlation objectives: GroupDRO (per-example coefficients from the online group
weights), DFR (ERM training, then a last-layer refit in `finalize`), Learning from Failure
(a biased model trained beside the debiased one, both in one train state) and Correct-n-Contrast
(cross-entropy plus a contrastive loss on the penultimate features)."""

from __future__ import annotations

import inspect
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustdata import losses as losses_lib
from robustdata.data import augment as augment_lib
from robustdata.evals import groups as group_evals
from robustdata.models.conv import with_conv
from robustdata.registry import MODELS, OBJECTIVES, ConfigError, check_known_fields, field_reader
from robustdata.spurious import cnc, dfr, group_source, groupdro, lff
from robustdata.spurious.alignment import ReportsAlignment
from robustdata.train import optim as optim_lib
from robustdata.train.objectives import Objective, require_plain_rule, section_reader


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


# The batch entry carrying the biased model's per-example cross-entropy into the inner step.
LFF_BIASED_LOSS = "lff_biased_loss"


@OBJECTIVES.register("lff")
class LearningFromFailure(ReportsAlignment, Objective):
  """Learning from Failure (Nam et al. '20; `robustdata.spurious.lff`): the run's model is the
  debiased one, trained on CE weighted by W(x) = CE_b / (CE_b + CE_d) (loss EMAs normalised by
  their class maximum); a biased model of the same architecture (`config.model`, its own
  initialisation) is trained on GCE beside it, with its own copy of `config.optim`, in
  `method_state`: params, model state, optimizer state, and the two EMA tables over the train
  split, so the pair is checkpointed and resumed together. Both models see the same (augmented)
  batch; the biased update uses the batch's policy weights too.

  Config `config.lff`: q (0.7, GCE's exponent), ema (0.7, the loss EMAs' decay), the paper's
  values. results.json adds the biased model's `lff_biased_*` test metrics. The GCE here is
  (1 - p_y^q) / q; the paper's code scales its gradient by a further q (an LR factor, which
  Adam ignores).
  """

  DEFAULTS = {"q": 0.7, "ema": 0.7}
  INIT_TAG = 0x1FF  # folded into the seed for the biased model's initialisation

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    super().__init__(config, num_groups=num_groups, num_classes=num_classes)
    section = config.get("lff", None) if hasattr(config, "get") else None
    if section is not None:
      check_known_fields(section, self.DEFAULTS, "config.lff")
    get = field_reader(section, self.DEFAULTS)
    self.q, self.ema = get("q"), get("ema")
    for name, value, ok, allowed in (("q", self.q, 0.0 < _num(self.q) <= 1.0, "(0, 1]"),
                                     ("ema", self.ema, 0.0 <= _num(self.ema) < 1.0, "[0, 1)")):
      if not ok:
        raise ConfigError(f"config.lff.{name}={value!r}; allowed: a number in {allowed}")
    self.q, self.ema = float(self.q), float(self.ema)
    require_plain_rule(config, "lff")
    self.model = with_conv(MODELS.get(config.model.name)(config.model, num_classes), config)
    self.tx = optim_lib.make_optimizer(config.optim)
    self.train_labels = None
    self.input_shape = None
    self.loss_fn = None

  def prepare(self, train) -> None:
    self.train_labels = np.asarray(train.y, np.int32)
    self.input_shape = tuple(train.x.shape[1:])

  def init(self):
    if self.train_labels is None:
      raise ValueError("LearningFromFailure.init needs the train split: call prepare(train)")
    key = jax.random.fold_in(jax.random.PRNGKey(int(self.config.seed)), self.INIT_TAG)
    variables = dict(self.model.init(key, jnp.zeros((1, *self.input_shape), jnp.float32),
                                     train=False))
    params = variables.pop("params")
    n = len(self.train_labels)
    return {"biased_params": params, "biased_model_state": variables,
            "biased_opt_state": self.tx.init(params),
            "ema_biased": jnp.zeros((n,), jnp.float32),
            "ema_debiased": jnp.zeros((n,), jnp.float32), "ema_seen": jnp.zeros((n,), jnp.float32)}

  def coefficients(self, losses, batch, method_state):
    ms = method_state
    index, mask = batch["index"], batch["mask"]
    ema_b, seen = lff.ema_update(ms["ema_biased"], ms["ema_seen"], index, batch[LFF_BIASED_LOSS],
                                 mask, alpha=self.ema)
    ema_d, _ = lff.ema_update(ms["ema_debiased"], ms["ema_seen"], index, losses, mask,
                              alpha=self.ema)
    w = lff.relative_difficulty(ema_b, ema_d, index, batch["y"], jnp.asarray(self.train_labels),
                                num_classes=self.num_classes)
    real = mask.astype(w.dtype)
    n = jnp.maximum(real.sum(), 1.0)
    metrics = {"lff_weight_mean": jnp.sum(w * real) / n,
               "lff_weight_max": jnp.max(jnp.where(real > 0, w, 0.0))}
    new_state = {**ms, "ema_biased": ema_b, "ema_debiased": ema_d, "ema_seen": seen}
    return w * batch["weight"], new_state, metrics

  def wrap_loss(self, loss_fn):
    self.loss_fn = loss_fn  # the biased model's forward pass (its CE is the EMA's loss)
    return loss_fn

  def wrap_step(self, step_fn):
    loss_fn, tx, q = self.loss_fn, self.tx, self.q
    if loss_fn is None:
      raise ValueError("LearningFromFailure.wrap_step needs wrap_loss to be called first")
    config = self.config
    augment = tuple(config.data.augment)
    crop_padding = int(config.data.crop_padding)

    def lff_step(state, batch, lr, operands=None):
      ms = state.method_state
      x = batch["x"]
      if augment:  # the augmentation the inner step draws (its key for this step)
        aug_key = jax.random.split(jax.random.fold_in(state.rng, state.step))[0]
        x = augment_lib.apply_augmentations(aug_key, x, augment, crop_padding=crop_padding)
      biased_batch = {**batch, "x": x}
      mask = batch["mask"]
      denom = jnp.maximum(jnp.sum(mask), 1.0)

      def biased_total(params):
        ce, (new_model_state, logits) = loss_fn(params, ms["biased_model_state"], biased_batch,
                                                None, True)
        gce = lff.gce_loss(logits, batch["y"], q=q)
        total = jnp.sum(mask * batch["weight"] * gce) / denom
        return total, (new_model_state, ce, logits)

      grads, (model_state_b, ce_b, logits_b) = jax.grad(biased_total, has_aux=True)(
          ms["biased_params"])
      opt_state = ms["biased_opt_state"]
      opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
      updates, opt_state = tx.update(grads, opt_state, ms["biased_params"])
      params_b = optax.apply_updates(ms["biased_params"], updates)

      inner = {**batch, LFF_BIASED_LOSS: jax.lax.stop_gradient(ce_b)}
      new_state, metrics = step_fn(state, inner, lr, operands)
      correct = (jnp.argmax(logits_b, -1) == batch["y"]).astype(jnp.float32)
      metrics = {**metrics, "lff_biased_loss": jnp.sum(mask * ce_b) / denom,
                 "lff_biased_accuracy": jnp.sum(mask * correct) / denom}
      method_state = {**new_state.method_state, "biased_params": params_b,
                      "biased_model_state": model_state_b, "biased_opt_state": opt_state}
      return new_state.replace(method_state=method_state), metrics

    return lff_step

  def finalize(self, run_ctx) -> dict[str, Any]:
    """The biased model's test metrics (`lff_biased_*`): how far it leans on the shortcut."""
    data, ms = run_ctx.data, run_ctx.state.method_state
    biased = run_ctx.state.replace(params=ms["biased_params"],
                                   model_state=ms["biased_model_state"])
    logits, _ = run_ctx.evaluator.logits_and_features(biased, data.test)
    out: dict[str, Any] = {}
    predictions = logits.argmax(-1)
    out["lff_biased_test_accuracy"] = float(np.mean(predictions == data.test.y))
    if data.test.groups is not None and data.num_groups:
      report = group_evals.group_report(
          predictions, data.test.y, data.test.groups, num_groups=data.num_groups,
          train_group_counts=run_ctx.train_group_counts, group_names=data.group_names or None,
          spurious=data.test.spurious)
      for key in ("worst_group_accuracy", "average_accuracy", "spurious_accuracy"):
        if key in report:
          out[f"lff_biased_{key}"] = report[key]
    out.update(super().finalize(run_ctx))
    return out


@OBJECTIVES.register("cnc")
class CorrectNContrast(ReportsAlignment, Objective):
  """Correct-n-Contrast (Zhang et al. '22; `robustdata.spurious.cnc`): the training loss is
  (1 - lam) * CE + lam * L_con, CE the policy-weighted mean cross-entropy of the batch and
  L_con the mean contrastive loss of its anchors on the model's L2-normalised penultimate
  features (`return_features`). Positives and negatives come from each example's spurious
  attribute: the inferred one with `config.group_stage` (inference method 'cnc': the ERM
  reference's predicted class), else the annotated one; the batch carries it through its
  (class, attribute) group id. Pair with policy 'cnc' for batches whose anchors all have
  positives and negatives; any other policy works too (fewer anchors).

  Config `config.cnc`: contrastive_weight (lam, 0.5) and temperature (tau, 0.05), the defaults
  of the Correct-n-Contrast code. Its code adds a projection head for L_con and updates the
  classifier less often; here L_con reads the penultimate features and one optimizer updates
  every parameter each step. Needs the plain gradient rule (L_con couples the batch's rows).

  The loss enters the step as per-example losses (so the plain rule, config.mask included,
  and the step's metrics work unchanged): (1 - lam) CE_i + lam * [i anchor] * L_i * n / A for
  n real rows and A anchors, whose masked mean is the loss above (with unit policy weights;
  a weight scales the example's own terms).
  """

  DEFAULTS = {"contrastive_weight": 0.5, "temperature": 0.05}

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    super().__init__(config, num_groups=num_groups, num_classes=num_classes)
    get = section_reader(config, "cnc", self.DEFAULTS)
    self.contrastive_weight = float(get("contrastive_weight"))
    self.temperature = float(get("temperature"))
    require_plain_rule(config, "cnc")
    if num_groups <= 0:
      raise ConfigError("config.method='cnc' needs (class, spurious attribute) groups on the train "
                        "split: a source with groups (e.g. 'spuco_digits') or config.group_stage "
                        "with inference method 'cnc'")
    self.model = with_conv(MODELS.get(config.model.name)(config.model, num_classes), config)
    if "return_features" not in inspect.signature(type(self.model).__call__).parameters:
      raise ConfigError(f"config.method='cnc' contrasts penultimate features, but config.model."
                        f"name={config.model.name!r} does not return them; allowed: a model with "
                        "return_features (mlp, cnn, pde_conv, resnet18/20/32)")
    optim = config.get("optim", None) if hasattr(config, "get") else None
    self.label_smoothing = float(optim.get("label_smoothing", 0.0)) if optim is not None else 0.0
    self.group_attribute = None

  def prepare(self, train) -> None:
    attribute = group_source.spurious_attribute(self.config, train, who="config.method='cnc'")
    self.group_attribute = cnc.group_attribute_table(
        train.groups, attribute, num_groups=self.num_groups,
        field="config.group_stage" if group_source.uses_inferred_groups(self.config)
        else f"config.data.name={self.config.data.name!r}")

  def coefficients(self, losses, batch, method_state):
    return batch["weight"], method_state, {}

  def _attribute(self, batch):
    if self.group_attribute is None:
      raise ValueError("CorrectNContrast needs the train split: call prepare(train) first")
    return jnp.asarray(self.group_attribute)[batch["groups"]]

  def wrap_loss(self, loss_fn):
    model, lam, tau, smoothing = (self.model, self.contrastive_weight, self.temperature,
                                  self.label_smoothing)

    def cnc_loss_fn(params, model_state, batch, rng, train=True):
      if not train:
        return loss_fn(params, model_state, batch, rng, train)
      variables = {"params": params, **model_state}
      if model_state:
        (logits, features), new_model_state = model.apply(
            variables, batch["x"], train=True, return_features=True,
            mutable=list(model_state.keys()))
        new_model_state = dict(new_model_state)
      else:
        logits, features = model.apply(variables, batch["x"], train=True, return_features=True)
        new_model_state = model_state
      ce = losses_lib.cross_entropy(logits, batch["y"], label_smoothing=smoothing)
      positives, negatives = cnc.contrastive_masks(batch["y"], self._attribute(batch),
                                                   batch["mask"])
      anchor, is_anchor = cnc.anchor_losses(features, positives, negatives, temperature=tau)
      scale = jnp.maximum(jnp.sum(batch["mask"]), 1.0) / jnp.maximum(jnp.sum(is_anchor), 1)
      return (1.0 - lam) * ce + lam * anchor * scale, (new_model_state, logits)

    return cnc_loss_fn

  def wrap_rule(self, rule):
    lam, smoothing = self.contrastive_weight, self.label_smoothing

    def rule_with_metrics(loss_fn, params, model_state, batch, rng, coef_fn, **kwargs):
      grads, new_model_state, aux = rule(loss_fn, params, model_state, batch, rng, coef_fn,
                                         **kwargs)
      mask = batch["mask"]
      positives, negatives = cnc.contrastive_masks(batch["y"], self._attribute(batch), mask)
      anchors = jnp.sum(jnp.any(positives, 1) & jnp.any(negatives, 1)).astype(jnp.float32)
      n = jnp.maximum(jnp.sum(mask), 1.0)
      ce = losses_lib.cross_entropy(jax.lax.stop_gradient(aux["logits"]), batch["y"],
                                    label_smoothing=smoothing)
      metrics = {"cnc_anchors": anchors, "cnc_cross_entropy": jnp.sum(mask * ce) / n}
      if lam > 0:  # the losses are (1 - lam) CE_i + lam c_i with sum(mask c) / n = L_con
        metrics["cnc_contrastive_loss"] = jnp.sum(
            mask * (aux["losses"] - (1.0 - lam) * ce)) / (lam * n)
      return grads, new_model_state, {**aux, **metrics}

    return rule_with_metrics


def _num(value) -> float:
  """`value` as a float for a range check (NaN, failing every check, if not a number)."""
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (
      float("nan"))
