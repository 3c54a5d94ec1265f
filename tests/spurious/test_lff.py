"""Learning from Failure (issue 25): GCE and its gradient against float64 NumPy, the loss EMAs
and the relative-difficulty weights against a direct loop (also through the objective's
coefficients), bad config fields, a smoke run of configs/spuco/lff_digits.py, and LfF above
ERM on worst-group accuracy on spuco_digits."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata import config_lib, runner
from robustdata.data.dataset import Dataset
from robustdata.registry import ConfigError
from robustdata.spurious import lff
from robustdata.spurious.objectives import LFF_BIASED_LOSS, LearningFromFailure


def _softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("q", [0.7, 0.3, 1.0])
def test_gce_loss_and_gradient_match_numpy(q):
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 2, (6, 4)).astype(np.float32)
  y = rng.integers(0, 4, 6)
  p = _softmax64(logits)
  p_y = p[np.arange(6), y]
  want = (1 - p_y ** q) / q
  got = lff.gce_loss(jnp.asarray(logits), jnp.asarray(y), q=q)
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=1e-6)
  # d/dz (1 - p_y^q) / q = p_y^q (p - e_y), row by row.
  want_grad = p_y[:, None] ** q * (p - np.eye(4)[y])
  grad = jax.grad(lambda z: jnp.sum(lff.gce_loss(z, jnp.asarray(y), q=q)))(jnp.asarray(logits))
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=2e-5, atol=1e-6)


def _ema_loop(table, seen, index, losses, mask, alpha):
  table, seen = np.array(table, np.float64), np.array(seen, np.float64)
  for i, l, m in zip(index, losses, mask):
    if m:
      table[i] = l if seen[i] == 0 else alpha * table[i] + (1 - alpha) * l
      seen[i] = 1
  return table, seen


def _weights_loop(ema_b, ema_d, index, labels, train_labels):
  out = []
  for i, c in zip(index, labels):
    b = ema_b[i] / ema_b[train_labels == c].max()
    d = ema_d[i] / ema_d[train_labels == c].max()
    out.append(b / (b + d + lff.EPS))
  return np.array(out)


def _tables(rng, n=12):
  train_y = rng.integers(0, 3, n)
  ema_b = rng.uniform(0.1, 2.0, n)
  ema_d = rng.uniform(0.1, 2.0, n)
  seen = (rng.random(n) < 0.5).astype(np.float64)
  return train_y, ema_b, ema_d, seen


def test_ema_and_weights_follow_the_formula():
  rng = np.random.default_rng(1)
  train_y, ema_b, _, seen = _tables(rng)
  index = np.array([0, 3, 5, 7, 3])  # a padding row repeats example 3
  mask = np.array([1, 1, 1, 1, 0])
  losses = rng.uniform(0, 3, 5)
  got_t, got_s = lff.ema_update(jnp.asarray(ema_b, jnp.float32), jnp.asarray(seen, jnp.float32),
                                jnp.asarray(index), jnp.asarray(losses, jnp.float32),
                                jnp.asarray(mask, jnp.float32), alpha=0.7)
  want_t, want_s = _ema_loop(ema_b, seen, index, losses, mask, 0.7)
  np.testing.assert_allclose(np.asarray(got_t), want_t, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(got_s), want_s)

  _, ema_b, ema_d, _ = _tables(rng)
  w = lff.relative_difficulty(jnp.asarray(ema_b, jnp.float32), jnp.asarray(ema_d, jnp.float32),
                              jnp.asarray(index), jnp.asarray(train_y[index]),
                              jnp.asarray(train_y), num_classes=3)
  np.testing.assert_allclose(np.asarray(w), _weights_loop(ema_b, ema_d, index, train_y[index],
                                                          train_y), rtol=1e-5)


def _objective(train_y, **lff_fields):
  config = config_lib.base_config()
  config.model.name = "mlp"
  config.model.hidden = (8,)
  config.method = "lff"
  config.lff = ml_collections.ConfigDict({"q": 0.7, "ema": 0.7, **lff_fields})
  train = Dataset(x=np.zeros((len(train_y), 4), np.float32), y=train_y,
                  ids=np.arange(len(train_y)))
  objective = LearningFromFailure(config, num_classes=3)
  objective.prepare(train)
  return objective


def test_coefficients_update_the_emas_then_weight_by_them():
  """The debiased coefficients of a batch: both EMAs updated with this batch's losses first,
  then W from the updated tables (the paper's order), times the policy weight."""
  rng = np.random.default_rng(2)
  train_y, ema_b, ema_d, seen = _tables(rng)
  objective = _objective(train_y.astype(np.int32))
  state = objective.init()
  assert state["biased_params"]["Dense_0"]["kernel"].shape == (4, 8)
  state = {**state, "ema_biased": jnp.asarray(ema_b, jnp.float32),
           "ema_debiased": jnp.asarray(ema_d, jnp.float32),
           "ema_seen": jnp.asarray(seen, jnp.float32)}
  index = np.array([1, 2, 4, 9])
  loss_b, loss_d = rng.uniform(0, 3, 4), rng.uniform(0, 3, 4)
  weight = np.array([1.0, 2.0, 1.0, 0.5])
  batch = {"index": jnp.asarray(index), "mask": jnp.ones(4), "y": jnp.asarray(train_y[index]),
           "weight": jnp.asarray(weight, jnp.float32),
           LFF_BIASED_LOSS: jnp.asarray(loss_b, jnp.float32)}
  coef, new, metrics = objective.coefficients(jnp.asarray(loss_d, jnp.float32), batch, state)
  tb, s = _ema_loop(ema_b, seen, index, loss_b, np.ones(4), 0.7)
  td, _ = _ema_loop(ema_d, seen, index, loss_d, np.ones(4), 0.7)
  want = _weights_loop(tb, td, index, train_y[index], train_y)
  np.testing.assert_allclose(np.asarray(coef), want * weight, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(new["ema_biased"]), tb, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(new["ema_debiased"]), td, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(new["ema_seen"]), s)
  assert float(metrics["lff_weight_mean"]) == pytest.approx(want.mean(), rel=1e-5)


def test_bad_fields_are_clear_errors():
  y = np.zeros(4, np.int32)
  with pytest.raises(ConfigError, match=r"config.lff.q=1.5; allowed: a number in \(0, 1\]"):
    _objective(y, q=1.5)
  with pytest.raises(ConfigError, match=r"config.lff.ema=1.0; allowed"):
    _objective(y, ema=1.0)
  with pytest.raises(ConfigError, match=r"config.lff.beta is not"):
    _objective(y, beta=0.5)


@pytest.mark.slow
def test_lff_beats_erm_worst_group_on_spuco_digits(tmp_path):
  """magnitude_large, strength 0.95, seed 0 (lff_digits.py's setting, Adam 1e-3 for both): ERM's
  best worst-group accuracy over 30 epochs is poor (measured 0.375); LfF's within 10 epochs is
  higher (measured 0.530, selected epoch 8). Over seeds 0-2 at 30 epochs LfF is higher in two
  (0.530/0.354/0.625 vs ERM 0.375/0.375/0.312); see lff_digits.py. The LfF run also shows the
  results contract: both models' metrics (the biased one from the checkpointed method state)."""
  from configs.spuco import lff_digits  # pylint: disable=g-import-not-at-top
  lff_config = lff_digits.get_config()
  erm_config = lff_digits.get_config()
  with lff_config.unlocked(), erm_config.unlocked():
    lff_config.train.epochs = 10
    lff_config.train.progress = erm_config.train.progress = "none"
    erm_config.method = "erm"
    del erm_config["lff"]
  _, erm = runner.run(erm_config, str(tmp_path))
  run_dir, lff_results = runner.run(lff_config, str(tmp_path))
  assert lff_results["method"] == "lff"
  for key in ("worst_group_accuracy", "average_accuracy", "test_accuracy",
              "lff_biased_worst_group_accuracy", "lff_biased_test_accuracy"):
    assert 0.0 <= lff_results[key] <= 1.0, key
  assert lff_results["worst_group_accuracy"] == min(lff_results["group_accuracy"].values())
  assert os.path.exists(os.path.join(run_dir, "group_accuracy.png"))
  assert erm["worst_group_accuracy"] < 0.5
  assert lff_results["worst_group_accuracy"] > erm["worst_group_accuracy"], (lff_results, erm)
