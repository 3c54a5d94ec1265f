"""The label-noise objectives: early-learning regularisation (ELR) and mixup, on the train
loop's objective hooks (train/objectives.py). Both compute the loss of a whole batch at once,
so they need the plain gradient rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robustdata import losses as losses_lib
from robustdata.registry import OBJECTIVES
from robustdata.train.objectives import Objective, require_plain_rule, section_reader

# The batch entry holding the ELR targets of the batch's rows, and the aux entry carrying the
# step's logits from the gradient rule out of the inner step (removed before metrics leave it).
ELR_TARGETS = "elr_targets"
_LOGITS_OUT = "objective_logits"


@OBJECTIVES.register("elr")
class ELR(Objective):
  """Early-learning regularisation (Liu et al., NeurIPS 2020): per example, the loss is
  CE + lam * log(1 - <t_i, p_i>), where t_i, a temporal ensemble of the model's (clipped,
  renormalised) softmax on example i, is first updated with this step's prediction:
  t_i <- beta t_i + (1 - beta) p_i. The targets (N, C), zero at the start, live in
  `method_state['targets']` indexed by train row, so they are checkpointed with the model.

  Config: `config.elr.beta` (0.7) and `config.elr.lam` (3.0), the paper's CIFAR-10 values.
  """

  DEFAULTS = {"beta": 0.7, "lam": 3.0}

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    super().__init__(config, num_groups=num_groups, num_classes=num_classes)
    get = section_reader(config, "elr", self.DEFAULTS)
    self.beta, self.lam = float(get("beta")), float(get("lam"))
    require_plain_rule(config, "elr")
    self.num_examples = None

  def prepare(self, train) -> None:
    self.num_examples = len(train)

  def init(self):
    if self.num_examples is None:
      raise ValueError("ELR.init needs the train split: call prepare(train) first")
    return {"targets": jnp.zeros((self.num_examples, self.num_classes), jnp.float32)}

  def coefficients(self, losses, batch, method_state):
    return batch["weight"], method_state, {}

  def wrap_loss(self, loss_fn):
    beta, lam = self.beta, self.lam

    def elr_loss_fn(params, model_state, batch, rng, train=True):
      losses, (new_model_state, logits) = loss_fn(params, model_state, batch, rng, train)
      if train and ELR_TARGETS in batch:
        targets = losses_lib.elr_target_update(batch[ELR_TARGETS], logits, beta=beta)
        losses = losses + lam * losses_lib.elr_regularizer(logits, targets)
      return losses, (new_model_state, logits)

    return elr_loss_fn

  def wrap_rule(self, rule):
    def rule_with_logits(*args, **kwargs):
      grads, new_model_state, aux = rule(*args, **kwargs)
      return grads, new_model_state, {**aux, _LOGITS_OUT: jax.lax.stop_gradient(aux["logits"])}

    return rule_with_logits

  def wrap_step(self, step_fn):
    beta = self.beta

    def elr_step(state, batch, lr, operands=None):
      table = state.method_state["targets"]
      batch = {**batch, ELR_TARGETS: table[batch["index"]]}
      new_state, metrics = step_fn(state, batch, lr, operands)
      metrics = dict(metrics)
      logits = metrics.pop(_LOGITS_OUT)
      updated = losses_lib.elr_target_update(batch[ELR_TARGETS], logits, beta=beta)
      targets = scatter_rows(table, batch["index"], updated, batch["mask"])
      return new_state.replace(method_state={**new_state.method_state, "targets": targets}), metrics

    return elr_step


def scatter_rows(table: jnp.ndarray, index: jnp.ndarray, rows: jnp.ndarray,
                 mask: jnp.ndarray) -> jnp.ndarray:
  """`table` with table[index[i]] = rows[i] for the real rows (mask 1); padding rows (which
  repeat real ones) write nothing."""
  where = jnp.where(mask > 0, index, table.shape[0])  # out of bounds: dropped
  return table.at[where].set(rows.astype(table.dtype), mode="drop")


def mixup_partners(key: jax.Array, mask: jnp.ndarray, *, alpha: float
                   ) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(lam ~ Beta(alpha, alpha), partner) for one batch: `partner` is a uniformly random
  permutation of the real rows (mask 1) among themselves; padding rows are paired with
  padding rows."""
  lam_key, perm_key = jax.random.split(key)
  lam = jax.random.beta(lam_key, alpha, alpha)
  pad = (mask <= 0).astype(jnp.float32)
  ordered = jnp.argsort(pad, stable=True)  # real rows first, in order
  shuffled = jnp.argsort(jax.random.uniform(perm_key, mask.shape) + 2.0 * pad)  # real first
  partner = jnp.zeros(mask.shape, jnp.int32).at[ordered].set(shuffled.astype(jnp.int32))
  return lam, partner


@OBJECTIVES.register("mixup")
class Mixup(Objective):
  """mixup (Zhang et al., ICLR 2018): each train batch is replaced by lam x + (1 - lam) x[pi]
  with target lam e_y + (1 - lam) e_y[pi], lam ~ Beta(alpha, alpha) and pi a random
  permutation of the batch, both drawn once per step from the step's key (so a resumed run
  draws the same). Evaluation and the policies' probes see clean inputs.

  Config: `config.mixup.alpha` (1.0).
  """

  DEFAULTS = {"alpha": 1.0}
  KEY_TAG = 0x3171  # folded into the step's loss key

  def __init__(self, config, *, num_groups: int = 0, num_classes: int = 0):
    super().__init__(config, num_groups=num_groups, num_classes=num_classes)
    self.alpha = float(section_reader(config, "mixup", self.DEFAULTS)("alpha"))
    require_plain_rule(config, "mixup")
    optim = config.get("optim", None) if hasattr(config, "get") else None
    self.label_smoothing = float(optim.get("label_smoothing", 0.0)) if optim is not None else 0.0

  def coefficients(self, losses, batch, method_state):
    return batch["weight"], method_state, {}

  def wrap_loss(self, loss_fn):
    alpha, smoothing, tag = self.alpha, self.label_smoothing, self.KEY_TAG

    def mixup_loss_fn(params, model_state, batch, rng, train=True):
      if not train or rng is None:
        return loss_fn(params, model_state, batch, rng, train)
      lam, partner = mixup_partners(jax.random.fold_in(rng, tag), batch["mask"], alpha=alpha)
      mixed = {**batch, "x": losses_lib.mixup_inputs(batch["x"], partner, lam)}
      own, (new_model_state, logits) = loss_fn(params, model_state, mixed, rng, train)
      other = losses_lib.cross_entropy(logits, batch["y"][partner], label_smoothing=smoothing)
      return lam * own + (1.0 - lam) * other, (new_model_state, logits)

    return mixup_loss_fn
