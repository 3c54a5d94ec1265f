"""ELR and mixup on the shared supervised loop: the kernels against float64 NumPy references,
ELR's target update against its closed form and inside a compiled step, mixup's draws, exact
resume of an interrupted ELR run, clear config errors, and (slow) ELR memorising fewer noisy
labels than ERM on digits with 40% symmetric noise."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from robustdata import config_lib, losses, runner, validation
from robustdata.data.dataset import Dataset
from robustdata.registry import MODELS, OBJECTIVES, ConfigError
from robustdata.train import driver
from robustdata.label_noise import objectives
from robustdata.train import grad_rules
from robustdata.train import optim as optim_lib
from robustdata.train import step as step_lib
from robustdata.train.state import create_train_state
from tests.conftest import REPO
from tests.conftest import sigint_after
from tests.test_resume_families import _assert_same, _outcome

CONFIG = os.path.join(REPO, "configs", "label_noise", "digits.py")


def _softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _elr_reference(logits, labels, targets, *, beta, lam):
  """float64: (updated targets, per-example loss, d sum(loss) / d logits)."""
  p = _softmax64(logits)
  inside = (p > 1e-4) & (p < 1 - 1e-4)
  pc = np.clip(p, 1e-4, 1 - 1e-4)
  t = beta * np.asarray(targets, np.float64) + (1 - beta) * pc / pc.sum(-1, keepdims=True)
  agree = (t * pc).sum(-1)
  onehot = np.eye(logits.shape[1])[labels]
  loss = -np.log(p[np.arange(len(labels)), labels]) + lam * np.log(1 - agree)
  # d pc_k / d z_j = inside_k p_k (delta_kj - p_j); d log(1 - a) / d pc_k = -t_k / (1 - a).
  s = (t * inside * p).sum(-1, keepdims=True)
  grad_reg = -(t * inside * p - p * s) / (1 - agree)[:, None]
  return t, loss, p - onehot + lam * grad_reg


def test_elr_loss_and_gradient_match_float64_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 2, (8, 5)).astype(np.float32)
  logits[0, 2] = 14.0  # p > 1 - 1e-4 and p < 1e-4: both clip ends
  logits[1] = [-9.0, 0.0, 0.5, 1.0, -12.0]
  labels = rng.integers(0, 5, 8)
  targets = rng.dirichlet(np.ones(5), 8) * rng.uniform(0, 1, (8, 1))
  targets[2] = 0.0  # a fresh example
  beta, lam = 0.7, 3.0
  t_ref, loss_ref, grad_ref = _elr_reference(logits, labels, targets, beta=beta, lam=lam)

  t = losses.elr_target_update(jnp.asarray(targets, jnp.float32), jnp.asarray(logits), beta=beta)
  np.testing.assert_allclose(t, t_ref, rtol=1e-5, atol=1e-7)
  fn = lambda z: losses.elr_loss(z, jnp.asarray(labels), t, lam=lam)
  np.testing.assert_allclose(fn(jnp.asarray(logits)), loss_ref, rtol=1e-5, atol=1e-5)
  grad = jax.jit(jax.grad(lambda z: fn(z).sum()))(jnp.asarray(logits))
  np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-6)
  # The targets are constants of the loss: updating them inside the loss changes no gradient.
  inner = jax.jit(jax.grad(lambda z: losses.elr_loss(
      z, jnp.asarray(labels), losses.elr_target_update(jnp.asarray(targets, jnp.float32), z,
                                                       beta=beta), lam=lam).sum()))
  np.testing.assert_allclose(inner(jnp.asarray(logits)), grad, rtol=1e-6, atol=1e-7)


def test_elr_target_update_has_the_closed_form():
  """From zero targets and a fixed prediction p, k updates give (1 - beta^k) p / sum(p)."""
  logits = jnp.asarray(np.random.default_rng(1).normal(0, 3, (4, 6)), jnp.float32)
  pc = np.clip(_softmax64(logits), 1e-4, 1 - 1e-4)
  pc /= pc.sum(-1, keepdims=True)
  t = jnp.zeros((4, 6))
  for k in range(1, 6):
    t = losses.elr_target_update(t, logits, beta=0.7)
    np.testing.assert_allclose(t, (1 - 0.7**k) * pc, rtol=1e-5, atol=1e-7)


def _mlp_setup(method: str, n: int = 12, num_classes: int = 4, **section):
  config = config_lib.base_config()
  config.method = method
  config.model.name = "mlp"
  config.model.hidden = (16,)
  config.optim.momentum = 0.0
  config.optim.weight_decay = 0.0
  if section:
    config[method] = section
  objective = OBJECTIVES.get(method)(config, num_classes=num_classes)
  rng = np.random.default_rng(2)
  train = Dataset(x=rng.normal(size=(n, 3)).astype(np.float32),
                  y=rng.integers(0, num_classes, n).astype(np.int32), ids=np.arange(n))
  objective.prepare(train)
  model = MODELS.get("mlp")(config.model, num_classes)
  tx = optim_lib.make_optimizer(config.optim)
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(3,),
                             method_state=objective.init())
  step = objective.wrap_step(step_lib.make_train_step(
      objective.wrap_loss(step_lib.make_loss_fn(model)), objective=objective,
      grad_rule=objective.wrap_rule(grad_rules.plain_rule), tx=tx))
  return config, objective, model, train, state, jax.jit(step)


def test_elr_step_updates_the_batch_rows_of_the_target_table():
  _, objective, model, train, state, step = _mlp_setup("elr", beta=0.6, lam=2.0)
  rng = np.random.default_rng(3)
  table = rng.dirichlet(np.ones(4), 12).astype(np.float32) * 0.9
  state = state.replace(method_state={"targets": jnp.asarray(table)})
  index = np.array([5, 0, 9, 3, 7], np.int32)  # the last row is padding (mask 0)
  batch = {"x": train.x[index], "y": train.y[index], "index": index,
           "weight": np.ones(5, np.float32), "mask": np.array([1, 1, 1, 1, 0], np.float32)}
  logits = np.asarray(model.apply({"params": state.params}, batch["x"]), np.float64)
  new_state, metrics = step(state, batch, np.float32(0.1))

  real = index[:4]
  t_ref, loss_ref, _ = _elr_reference(logits[:4], batch["y"][:4], table[real], beta=0.6, lam=2.0)
  got = np.asarray(new_state.method_state["targets"])
  np.testing.assert_allclose(got[real], t_ref, rtol=1e-5, atol=1e-6)
  untouched = np.setdiff1d(np.arange(12), real)  # row 7 (padding only) included
  np.testing.assert_array_equal(got[untouched], table[untouched])
  np.testing.assert_allclose(metrics["loss"], loss_ref.mean(), rtol=1e-5)  # with updated targets
  assert objectives.ELR_TARGETS not in metrics and "objective_logits" not in metrics
  assert int(new_state.step) == 1


def test_mixup_kernels_match_numpy_reference():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(6, 4, 4, 1)).astype(np.float32)
  logits = rng.normal(size=(6, 5)).astype(np.float32)
  y = rng.integers(0, 5, 6)
  partner, lam = np.array([3, 0, 5, 1, 2, 4]), 0.3
  np.testing.assert_allclose(losses.mixup_inputs(jnp.asarray(x), jnp.asarray(partner), lam),
                             lam * x.astype(np.float64) + (1 - lam) * x[partner], rtol=1e-6)
  for eps in (0.0, 0.1):
    target = lam * np.eye(5)[y] + (1 - lam) * np.eye(5)[y[partner]]
    target = (1 - eps) * target + eps / 5
    logp = np.log(_softmax64(logits))
    ref = -(target * logp).sum(-1)  # CE against the mixed (smoothed) one-hot target
    got = losses.mixup_loss(jnp.asarray(logits), jnp.asarray(y), jnp.asarray(partner), lam,
                            label_smoothing=eps)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_mixup_loss_mixes_inputs_and_labels_with_the_steps_draw():
  config, objective, *_ = _mlp_setup("mixup", alpha=0.4)
  rng = np.random.default_rng(5)
  w = rng.normal(size=(3, 4)).astype(np.float32)
  batch = {"x": rng.normal(size=(6, 3)).astype(np.float32), "y": rng.integers(0, 4, 6),
           "mask": np.array([1, 1, 1, 1, 1, 0], np.float32)}

  def base(params, model_state, b, key, train=True):
    logits = b["x"] @ params
    return losses.cross_entropy(logits, b["y"]), (model_state, logits)

  key = jax.random.PRNGKey(11)
  got, _ = objective.wrap_loss(base)(jnp.asarray(w), {}, batch, key, True)
  lam, partner = objectives.mixup_partners(jax.random.fold_in(key, objective.KEY_TAG),
                                           jnp.asarray(batch["mask"]), alpha=0.4)
  lam, partner = float(lam), np.asarray(partner)
  assert sorted(partner[:5]) == [0, 1, 2, 3, 4] and partner[5] == 5  # real rows among themselves
  xm = lam * batch["x"].astype(np.float64) + (1 - lam) * batch["x"][partner]
  logp = np.log(_softmax64(xm @ w))
  ref = -(lam * logp[np.arange(6), batch["y"]] + (1 - lam) * logp[np.arange(6),
                                                                  batch["y"][partner]])
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  clean, _ = objective.wrap_loss(base)(jnp.asarray(w), {}, batch, key, False)  # eval: no mixup
  np.testing.assert_allclose(clean, base(jnp.asarray(w), {}, batch, key)[0])


def test_mixup_draws_lambda_from_beta_and_a_permutation():
  mask = jnp.ones(8)
  keys = jax.random.split(jax.random.PRNGKey(0), 1000)
  for alpha in (1.0, 0.2):
    lams, partners = jax.jit(jax.vmap(
        lambda k, a=alpha: objectives.mixup_partners(k, mask, alpha=a)))(keys)
    assert stats.kstest(np.asarray(lams), stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert all(sorted(p) == list(range(8)) for p in np.asarray(partners[:50]))
  again = jax.jit(lambda k: objectives.mixup_partners(k, mask, alpha=1.0))(keys[0])
  np.testing.assert_array_equal(again[1], partners[0])  # a key fixes the draw


@pytest.mark.parametrize("method, section, value, message", [
    ("elr", {"beta": 1.0}, None, "config.elr.beta=1.0 is out of range; allowed: a finite number "
     "in [0.0, 1.0)"),
    ("elr", {"lam": -1.0}, None, "config.elr.lam=-1.0 is out of range"),
    ("elr", {"lambda_": 3.0}, None, "config.elr.lambda_ is not a known field; allowed: ['beta', "
     "'lam']"),
    ("mixup", {"alpha": 0.0}, None, "config.mixup.alpha=0.0 is out of range"),
    ("mixup", {}, "dp_sgd", "config.method='mixup' needs the plain gradient rule"),
    ("elr", {}, "clip_only", "config.method='elr' needs the plain gradient rule"),
])
def test_bad_objective_configs_are_clear_errors(method, section, value, message):
  config = config_lib.base_config()
  config.method = method
  config[method] = section
  if value:
    config.privacy.mode = value
  with pytest.raises(ConfigError) as e:
    OBJECTIVES.get(method)(config, num_classes=10)
  assert message in str(e.value)


def _smoke(arg: str):
  """The smoke variant cut to 2 epochs of 20 steps, logging every 3, checkpoints every 5."""
  config = validation.load_config_file(f"{CONFIG}:{arg}")
  with config.unlocked():
    config.train.progress = "none"
    config.train.epochs = 2
    config.train.log_every_steps = 3
    config.train.checkpoint_every_steps = 5
  return config


class _Killed(Exception):
  """Stands in for a SIGKILL: the run stops inside a step, without a checkpoint."""


def test_interrupted_elr_run_resumes_exactly(tmp_path, monkeypatch):
  """A SIGINT inside an epoch (checkpoint at that step) and a kill without a checkpoint (the
  run replays from the last periodic one): both end as an uninterrupted run, so the targets
  table is checkpointed and restored bit for bit."""
  from robustdata.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  config = _smoke("smoke,elr")
  ref_dir, ref = runner.run(config, str(tmp_path / "ref"))
  assert ref["method"] == "elr" and ref["steps"] == 40
  expected = _outcome(ref_dir)

  with pytest.MonkeyPatch.context() as patch:
    sigint_after(patch, 8)  # step 8: off the log (3) and checkpoint (5) cadences
    with pytest.raises(driver.Interrupted, match="at step 8"):
      runner.run(config, str(tmp_path / "sigint"))
  run_dir, _ = runner.run(config, str(tmp_path / "sigint"))
  _assert_same(expected, _outcome(run_dir))

  append, count = metrics_lib.MetricsWindow.append, [0]

  def append_then_die(self, metrics):
    append(self, metrics)
    count[0] += 1
    if count[0] == 27:  # the last checkpoint is step 25
      raise _Killed("killed at step 27")

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(metrics_lib.MetricsWindow, "append", append_then_die)
    with pytest.raises(_Killed):
      runner.run(config, str(tmp_path / "kill"))
  run_dir, _ = runner.run(config, str(tmp_path / "kill"))
  _assert_same(expected, _outcome(run_dir))


def test_mixup_run_resumes_exactly(tmp_path):
  config = _smoke("smoke,mixup")
  ref_dir, _ = runner.run(config, str(tmp_path / "ref"))
  with pytest.MonkeyPatch.context() as patch:
    sigint_after(patch, 23)
    with pytest.raises(driver.Interrupted, match="at step 23"):
      runner.run(config, str(tmp_path / "sigint"))
  run_dir, _ = runner.run(config, str(tmp_path / "sigint"))
  _assert_same(_outcome(ref_dir), _outcome(run_dir))


@pytest.mark.slow
def test_elr_memorises_fewer_noisy_labels(tmp_path):
  """Digits, 40% symmetric noise, 60 epochs (the config's default): ERM fits the flipped labels,
  ELR keeps predicting most flipped examples' true class, and tests better.

  Measured (seed 0, CPU): train_accuracy_noisy ERM 0.994, ELR 0.078, mixup 0.157;
  test_accuracy ERM 0.685, ELR 0.969, mixup 0.916. Regenerate with
  `python -m experiments.main --config=configs/label_noise/digits.py:sym40,<erm|elr|mixup>`.
  """
  results = {}
  for method in ("erm", "elr"):
    config = validation.load_config_file(f"{CONFIG}:sym40,{method}")
    with config.unlocked():
      config.train.progress = "none"
    _, results[method] = runner.run(config, str(tmp_path))
  erm, elr = results["erm"], results["elr"]
  print({m: {k: round(r[k], 4) for k in ("train_accuracy_noisy", "train_noisy_true_accuracy",
                                         "train_accuracy_clean", "test_accuracy")}
         for m, r in results.items()})
  assert erm["train_noisy_count"] == elr["train_noisy_count"] == int(0.4 * 1258)
  assert erm["train_accuracy_noisy"] > 0.8  # ERM memorises the noisy labels
  assert elr["train_accuracy_noisy"] < 0.5 * erm["train_accuracy_noisy"]
  assert elr["train_noisy_true_accuracy"] > erm["train_noisy_true_accuracy"] + 0.3
  assert elr["test_accuracy"] > erm["test_accuracy"]
