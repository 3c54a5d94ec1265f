"""The compiled functions: the train step, the eval step and the probes policies use.

`make_train_step` returns a pure `step(state, batch, lr) -> (state, metrics)`; the loop jits
it once with shardings and donates the state. A batch is a dict of arrays with a leading batch
axis: `x`, `y`, `weight`, `mask` (1 real, 0 padding), `index`, and `groups` where the data has
them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from robustdata import losses as losses_lib
from robustdata.data import augment as augment_lib
from robustdata.train.objectives import Objective
from robustdata.train.state import TrainState


def make_loss_fn(model, *, label_smoothing: float = 0.0) -> Callable:
  """loss_fn(params, model_state, batch, rng, train) -> (losses[B], (new_model_state, logits))."""

  def loss_fn(params, model_state, batch, rng, train=True):
    del rng  # the models here draw no randomness (no dropout)
    variables = {"params": params, **model_state}
    if train and model_state:
      logits, new_model_state = model.apply(variables, batch["x"], train=True,
                                            mutable=list(model_state.keys()))
      new_model_state = dict(new_model_state)
    else:
      logits = model.apply(variables, batch["x"], train=train)
      new_model_state = model_state
    losses = losses_lib.cross_entropy(logits, batch["y"], label_smoothing=label_smoothing)
    return losses, (new_model_state, logits)

  return loss_fn


def make_train_step(loss_fn: Callable, *, objective: Objective, grad_rule: Callable,
                    tx: optax.GradientTransformation, augment: Sequence[str] = (),
                    crop_padding: int = 4,
                    project: Optional[Callable[[Any], Any]] = None,
                    input_transform: Optional[Callable[[jax.Array, dict], jax.Array]] = None,
                    ) -> Callable:
  """step(state, batch, lr, operands=None) -> (state, metrics): input transform, augment,
  gradient rule, optimizer update, then `project(params)` when given (e.g. re-applying a
  pruning mask after momentum). `operands` (grad_rules.RuleChoice.operands) are passed on to
  the rule and to `project` when not None. `input_transform(key, batch) -> x` (e.g. a defence's
  noise on the train images) runs before augmentation on a key of its own, so the other streams
  are the same with or without it."""

  def step(state: TrainState, batch: dict, lr: jnp.ndarray, operands: Any = None):
    extra = {} if operands is None else {"operands": operands}
    key = jax.random.fold_in(state.rng, state.step)
    aug_key, loss_key = jax.random.split(key)
    if input_transform is not None:
      batch = {**batch, "x": input_transform(jax.random.fold_in(key, 0x1A7), batch)}
    if augment:
      batch = {**batch, "x": augment_lib.apply_augmentations(aug_key, batch["x"], augment,
                                                             crop_padding=crop_padding)}

    def coef_fn(losses, b):
      return objective.coefficients(losses, b, state.method_state)[0]

    grads, new_model_state, aux = grad_rule(loss_fn, state.params, state.model_state, batch,
                                            loss_key, coef_fn, **extra)
    losses, logits = aux.pop("losses"), aux.pop("logits")
    _, new_method_state, method_metrics = objective.coefficients(
        jax.lax.stop_gradient(losses), batch, state.method_state)

    opt_state = state.opt_state
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if project is not None:
      params = project(params) if operands is None else project(params, operands)

    mask = batch["mask"]
    n = jnp.maximum(jnp.sum(mask), 1.0)
    correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
    metrics = {
        "loss": jnp.sum(losses * mask) / n,
        "accuracy": jnp.sum(correct * mask) / n,
        "grad_norm": optax.global_norm(grads),
        "lr": jnp.asarray(lr, jnp.float32),
        "examples": jnp.sum(mask),
        **method_metrics, **aux,
    }
    new_state = state.replace(step=state.step + 1, params=params, model_state=new_model_state,
                              opt_state=opt_state, method_state=new_method_state)
    return new_state, metrics

  return step


def make_eval_step(model) -> Callable:
  """eval_step(params, model_state, x) -> (logits, features) in eval mode."""

  def eval_step(params, model_state, x):
    return model.apply({"params": params, **model_state}, x, train=False, return_features=True)

  return eval_step


PROBES = ("logits", "loss", "proxy", "features", "proxy_linear", "grad_norm_proxy")


def probe_outputs(logits: jnp.ndarray, features: jnp.ndarray, y: jnp.ndarray) -> dict[str, Any]:
  """The per-example probe features from eval-mode logits and penultimate features.

  proxy = softmax - onehot (dLoss/dlogits, the CRAIG last-layer gradient proxy);
  proxy_linear = proxy (x) features flattened (the exact last-linear-layer weight gradient).
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  proxy = probs - jax.nn.one_hot(y, logits.shape[-1], dtype=probs.dtype)
  return {
      "logits": logits,
      "loss": losses_lib.cross_entropy(logits, y),
      "proxy": proxy,
      "features": features,
      "proxy_linear": (proxy[:, :, None] * features[:, None, :]).reshape(len(y), -1),
      "grad_norm_proxy": jnp.linalg.norm(proxy, axis=-1),
  }
