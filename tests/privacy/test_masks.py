"""config.mask (robustdata/privacy/masks.py): a fixed random or magnitude mask over the conv/dense
kernels, with the plain rule and with DP-SGD; its density, its fixedness over steps and a
kill-and-resume, exact zeros, and bad values."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata import config_lib, runner, validation
from robustdata.models import CNN
from robustdata.registry import ConfigError
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.privacy import masks
from robustdata.train import grad_rules
from robustdata.train import metrics as metrics_lib
from tests.conftest import REPO


def _params():
  x = jnp.zeros((1, 8, 8, 1))
  return jax.device_get(jax.jit(CNN(10, channels=(8, 16), dense=32).init)(
      jax.random.PRNGKey(0), x))["params"]


def _kernels(tree):
  return {k: np.asarray(v) for k, v in masks.flatten(tree).items() if masks.is_prunable(k, v)}


@pytest.mark.parametrize("density", [0.01, 0.1, 0.3, 0.5, 0.77, 1.0])
def test_random_mask_has_the_requested_density(density):
  params = _params()
  n = sum(v.size for v in _kernels(params).values())
  mask = masks.random_masks(params, density=density, seed=3)
  kept = sum(int(v.sum()) for v in _kernels(mask).values())
  assert abs(kept - density * n) <= 1  # round(d n) kept: within one parameter
  for key, leaf in masks.flatten(mask).items():  # biases stay unmasked; values are 0 or 1
    assert set(np.unique(leaf)) <= {0.0, 1.0}
    if not masks.is_prunable(key, leaf):
      assert np.all(leaf == 1.0)
  # Layer scope: round(d n_l) in every kernel.
  per_layer = masks.random_masks(params, density=density, seed=3, scope="layer")
  for key, leaf in _kernels(per_layer).items():
    assert abs(leaf.sum() - density * leaf.size) <= 1, key


def test_random_mask_is_uniform_and_seeded():
  params = _params()
  a = masks.random_masks(params, density=0.25, seed=0)
  assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(
      masks.random_masks(params, density=0.25, seed=0))))
  b = masks.random_masks(params, density=0.25, seed=1)
  assert not all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  # Global scope: each big kernel keeps about d of its coordinates (hypergeometric, 5 sigma).
  for key, leaf in _kernels(a).items():
    if leaf.size >= 500:
      sd = np.sqrt(leaf.size * 0.25 * 0.75)
      assert abs(leaf.sum() - 0.25 * leaf.size) < 5 * sd, key
  # Over many seeds every coordinate of a kernel is kept with probability d (chi-square, 15 dof).
  key = ("conv0", "kernel")
  counts = sum(np.asarray(masks.flatten(masks.random_masks(params, density=0.25, seed=s))[key])
               for s in range(400)).ravel()[:16]
  expected = 400 * 0.25
  chi2 = float(np.sum((counts - expected) ** 2 / (expected * 0.75)))
  assert chi2 < 37.7  # the 0.999 quantile of chi-square with 15 degrees of freedom


def test_masked_rule_masks_the_plain_gradient():
  params = _params()
  model = CNN(10, channels=(8, 16), dense=32)
  from robustdata.train import step as step_lib
  loss_fn = step_lib.make_loss_fn(model)
  batch = {"x": jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1)),
           "y": jnp.arange(6) % 10, "mask": jnp.ones(6), "weight": jnp.ones(6)}
  coef_fn = lambda losses, b: jnp.ones_like(losses)
  mask = masks.random_masks(params, density=0.4, seed=0)
  flat = masks.flat_operand_mask(mask)
  # Each rule as one jitted program (eager, each operation compiles on its own).
  plain, _, _ = jax.jit(lambda p: grad_rules.plain_rule(loss_fn, p, {}, batch, None, coef_fn))(
      params)
  got, _, _ = jax.jit(lambda p, f: masks.masked_rule(grad_rules.plain_rule)(
      loss_fn, p, {}, batch, None, coef_fn, operands={"mask": f}))(params, flat)
  for key, g in masks.flatten(got).items():
    expected = np.asarray(masks.flatten(plain)[key]) * np.asarray(
        masks.flatten(mask)[key])
    np.testing.assert_array_equal(np.asarray(g), expected)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, True, "half"])
def test_density_outside_the_range_is_named(bad):
  section = dict(config_lib.MASK_DEFAULTS, density=bad)
  with pytest.raises(ConfigError, match=r"config.mask.density=.* must be in \(0, 1\]"):
    masks.MaskPlan(section, seed=0)


def test_bad_mask_fields_are_named_before_training():
  config = _config(density=0.0)
  with pytest.raises(ConfigError, match=r"config.mask.density=0.0 is out of range"):
    validation.check_ranges(config)
  with pytest.raises(ConfigError, match=r"config.mask.kind='lottery' is not known"):
    masks.MaskPlan(ml_collections.ConfigDict({"kind": "lottery"}), seed=0)
  with pytest.raises(ConfigError, match=r"config.mask.sparsity is not a known field"):
    masks.MaskPlan(ml_collections.ConfigDict({"sparsity": 0.5}), seed=0)


def test_a_partial_mask_section_is_completed_and_hashed():
  config = _config(density=0.5)
  full = config_lib.config_hash(config_lib.resolve(config))
  with config.unlocked():
    del config.mask["scope"]
  resolved = config_lib.resolve(config)
  assert resolved.mask.scope == "global"
  assert config_lib.config_hash(resolved) == full


# --- Training with a mask: the step, checkpoints and a resume. --------------------------------


def _config(*, density: float, **overrides):
  config = validation.load_config_file(os.path.join(REPO, "configs/width_noise/digits.py:"
                                                          "smoke,s25"))
  with config.unlocked():
    config.train.progress = "none"
    config.train.checkpoint_every_steps = 4
    config.train.log_every_steps = 5
    config.model.width = 24
    config.mask.density = density
    for dotted, value in overrides.items():
      section, _, field = dotted.rpartition(".")
      (config[section] if section else config)[field] = value
  return config


@pytest.fixture
def saves(monkeypatch):
  """(step, host params, host state) of every checkpoint the test's runs save."""
  seen, save = [], checkpoint_lib.Checkpointer.save

  def recording_save(self, step, state, host):
    seen.append((int(step), jax.device_get(state.params), host))
    return save(self, step, state, host)

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", recording_save)
  return seen


def _check_masked(saved, config) -> None:
  """Every checkpoint holds the same mask (the one drawn from the seed) and zero weights on it."""
  expected = masks.random_masks(saved[0][1], density=config.mask.density, seed=config.seed)
  for step, params, host in saved:
    mask = masks.decode_mask(host["mask"]["mask"])
    for key, leaf in masks.flatten(mask).items():
      np.testing.assert_array_equal(leaf, np.asarray(masks.flatten(expected)[key]))
      weights = np.asarray(masks.flatten(params)[key])
      assert np.all(weights[leaf == 0] == 0.0), (step, key)  # exactly zero
      if masks.is_prunable(key, leaf):
        assert np.count_nonzero(weights[leaf == 1]) == int(leaf.sum()), (step, key)


def test_masked_weights_stay_zero_over_training(saves, tmp_path):
  config = _config(density=0.3)
  _, results = runner.run(config, str(tmp_path))
  assert len({s for s, *_ in saves}) >= 3
  _check_masked(saves, config)
  n = sum(v.size for v in _kernels(saves[-1][1]).values())
  assert results["mask_kind"] == "random"
  assert abs(results["mask_density"] * n - 0.3 * n) <= 1


class _Killed(Exception):
  """Stands in for a SIGKILL: the run stops where it is, without a checkpoint."""


@pytest.mark.slow
def test_mask_is_fixed_across_a_kill_and_resume(saves, tmp_path):
  config = _config(density=0.3)
  _, reference = runner.run(config, str(tmp_path / "reference"))
  saves.clear()
  append, count = metrics_lib.MetricsWindow.append, [0]

  def append_then_kill(self, metrics):  # a kill after step 7: the last checkpoint is step 4
    append(self, metrics)
    count[0] += 1
    if count[0] == 7:
      raise _Killed("killed")

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(metrics_lib.MetricsWindow, "append", append_then_kill)
    with pytest.raises(_Killed):
      runner.run(config, str(tmp_path / "resumed"))
  assert max(s for s, *_ in saves) <= 7
  _, resumed = runner.run(config, str(tmp_path / "resumed"))
  _check_masked(saves, config)
  rows = runner.compare(reference, resumed)
  assert all(same for *_, same in rows), [r for r in rows if not r[3]]


def test_mask_with_dp_sgd_keeps_masked_weights_zero(saves, tmp_path):
  config = validation.load_config_file(os.path.join(REPO, "configs/dpsgd/digits.py:smoke"))
  with config.unlocked():
    config.train.progress = "none"
    config.train.max_steps = 6
    config.train.checkpoint_every_steps = 3
    config.privacy.target_epsilon = 0.0
    config.privacy.noise_multiplier = 5.0  # loud noise: any leak onto a masked weight shows
    config.mask = ml_collections.ConfigDict(dict(config_lib.MASK_DEFAULTS, density=0.2))
  _, results = runner.run(config, str(tmp_path))
  assert results["mask_density"] == pytest.approx(0.2, abs=1e-3)
  expected = masks.random_masks(saves[0][1], density=0.2, seed=config.seed)
  for _, params, _ in saves:
    for key, leaf in _kernels(expected).items():
      assert np.all(np.asarray(masks.flatten(params)[key])[leaf == 0] == 0.0), key
