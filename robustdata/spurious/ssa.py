"""SSA's group inference (Nam et al., ICLR 2022; SpuCo's SSA): a predictor of the spurious
attribute trained on the small group-labelled split (part of validation), then retrained with
confident pseudo-labels of the train split, labels every train example; its groups are
(class, predicted attribute).

The train split is cut into `num_splits` folds; the predictor that labels fold k takes its
pseudo-labels from the other folds only, so no example labels itself. The predictor is a
softmax regression or a one-hidden-layer MLP on standardised inputs (flattened images, or a
reference model's features), trained with SGD (momentum 0.9, weight decay) on batches that are
balanced over the (class, attribute) groups of its training set, and kept at the step of best
attribute accuracy on a held-out part of the labelled split (SpuCo's model selection).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustdata.registry import ConfigError
from robustdata.spurious import inference

EVALS = 10  # model-selection checks per training run


def _init(key: jax.Array, dim: int, hidden: int, num_out: int) -> dict[str, jnp.ndarray]:
  sizes = [dim, hidden, num_out] if hidden > 0 else [dim, num_out]
  params = {}
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    params[f"w{i}"] = jax.random.normal(jax.random.fold_in(key, i), (a, b)) / np.sqrt(a)
    params[f"b{i}"] = jnp.zeros((b,))
  return params


def predict_logits(params: dict[str, jnp.ndarray], z: jnp.ndarray) -> jnp.ndarray:
  """The predictor's attribute logits for standardised inputs `z` (N, D)."""
  layers = len(params) // 2
  h = z
  for i in range(layers):
    h = h @ params[f"w{i}"] + params[f"b{i}"]
    if i < layers - 1:
      h = jax.nn.relu(h)
  return h


def train_predictor(z: np.ndarray, targets: np.ndarray, strata: np.ndarray, z_select: np.ndarray,
                    s_select: np.ndarray, *, num_out: int, hidden: int, steps: int, lr: float,
                    weight_decay: float, batch_size: int, seed: int
                    ) -> tuple[dict[str, jnp.ndarray], float]:
  """(params, selection accuracy) of a predictor of `targets` from `z`, batches drawn with
  probability 1 / (#strata * |stratum|) per example, kept at its best accuracy on
  (z_select, s_select) over EVALS checks (ties: the later)."""
  strata = np.unique(np.asarray(strata), return_inverse=True)[1].reshape(-1)
  counts = np.bincount(strata)
  probs = jnp.asarray(1.0 / (len(counts) * counts[strata]), jnp.float32)
  z, targets = jnp.asarray(z, jnp.float32), jnp.asarray(targets, jnp.int32)
  key = jax.random.PRNGKey(seed)
  params = _init(jax.random.fold_in(key, 0), z.shape[1], hidden, num_out)
  tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=0.9))
  chunk = max(steps // EVALS, 1)

  def loss(p, rows):
    logits = predict_logits(p, z[rows])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets[rows]))

  @jax.jit
  def run(carry, start):
    def body(i, c):
      p, opt = c
      rows = jax.random.choice(jax.random.fold_in(key, start + i + 1), len(probs),
                               (batch_size,), p=probs)
      updates, opt = tx.update(jax.grad(loss)(p, rows), opt, p)
      return optax.apply_updates(p, updates), opt
    return jax.lax.fori_loop(0, chunk, body, carry)

  carry, best, best_acc = (params, tx.init(params)), params, -1.0
  z_select = jnp.asarray(z_select, jnp.float32)
  for check in range(-(-steps // chunk)):
    carry = run(carry, check * chunk)
    acc = float(np.mean(np.asarray(predict_logits(carry[0], z_select).argmax(-1)) == s_select))
    if acc >= best_acc:
      best, best_acc = carry[0], acc
  return best, best_acc


def ssa_groups(z_train: np.ndarray, y_train: np.ndarray, z_labelled: np.ndarray,
               y_labelled: np.ndarray, s_labelled: np.ndarray, *, num_classes: int,
               num_splits: int = 3, threshold: float = 0.95, select_fraction: float = 0.5,
               hidden: int = 64, steps: int = 500, lr: float = 0.01, weight_decay: float = 5e-4,
               batch_size: int = 128, seed: int = 0,
               labelled_field: str = "config.inference.ssa_labelled_fraction"
               ) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
  """(groups, names, info): train example i in group (y_i, predicted attribute), names
  'y=c,s=a'. The labelled split (z, y, s) is cut once into a fitting part and a
  `select_fraction` part for model selection; ConfigError naming `labelled_field` if the
  fitting part holds no minority example (outside its class's largest group)."""
  y_train, y_lab, s_lab = (np.asarray(a, np.int64) for a in (y_train, y_labelled, s_labelled))
  num_spurious = int(s_lab.max()) + 1 if len(s_lab) else 0
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x55A]))
  order = rng.permutation(len(y_lab))
  cut = int(round(len(order) * (1.0 - select_fraction)))
  fit, select = order[:cut], order[cut:]
  fit_groups = y_lab[fit] * max(num_spurious, 1) + s_lab[fit]
  if len(fit) == 0 or not inference.minority_mask(fit_groups, y_lab[fit]).any():
    raise ConfigError(f"{labelled_field}: the group-labelled examples SSA trains on ({len(fit)} "
                      "of the labelled split, the rest selects the model) hold no minority-group "
                      "example (every labelled example is in its class's largest group), so the "
                      "attribute predictor cannot learn the minority; label more of the split")
  if len(select) == 0:
    select = fit
  mean = np.concatenate([z_train, z_labelled]).mean(0)
  std = np.concatenate([z_train, z_labelled]).std(0) + 1e-6
  zt, zl = (z_train - mean) / std, (z_labelled - mean) / std
  common = dict(num_out=num_spurious, hidden=hidden, steps=steps, lr=lr,
                weight_decay=weight_decay, batch_size=batch_size)
  folds = np.array_split(rng.permutation(len(y_train)), num_splits)
  predicted = np.zeros(len(y_train), np.int64)
  info: dict[str, Any] = {"ssa_select_accuracy": [], "ssa_pseudo_labelled": [],
                          "ssa_labelled_fit": int(len(fit)),
                          "ssa_labelled_select": int(len(select))}
  first, acc0 = train_predictor(zl[fit], s_lab[fit], fit_groups, zl[select], s_lab[select],
                                seed=seed, **common)
  for k, fold in enumerate(folds):
    pool = np.setdiff1d(np.arange(len(y_train)), fold) if num_splits > 1 else fold
    probs = np.asarray(jax.nn.softmax(predict_logits(first, jnp.asarray(zt[pool], jnp.float32))))
    confident = pool[probs.max(-1) >= threshold]
    pseudo = probs.argmax(-1)[probs.max(-1) >= threshold]
    z_fit = np.concatenate([zl[fit], zt[confident]])
    s_fit = np.concatenate([s_lab[fit], pseudo])
    y_fit = np.concatenate([y_lab[fit], y_train[confident]])
    params, acc = train_predictor(z_fit, s_fit, y_fit * num_spurious + s_fit, zl[select],
                                  s_lab[select], seed=seed + k + 1, **common)
    predicted[fold] = np.asarray(predict_logits(params, jnp.asarray(zt[fold], jnp.float32))
                                 ).argmax(-1)
    info["ssa_select_accuracy"].append(acc)
    info["ssa_pseudo_labelled"].append(int(len(confident)))
  info["ssa_supervised_select_accuracy"] = acc0
  names = [f"y={c},s={a}" for c in range(num_classes) for a in range(num_spurious)]
  groups, names_out = inference.compact(y_train * num_spurious + predicted, names)
  return groups, names_out, info
