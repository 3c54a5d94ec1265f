"""SafeCLIP's CLIP pass with `contrastive.augment=False`: the trainer feeds it the original
captions (not the EDA views) and the step the un-augmented images, while the unimodal step
keeps both augmented image views and both EDA captions; the shapes config uses it, the cc3m
config keeps the reference cross_aug; a non-bool `augment` is a named ConfigError."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata import losses
from robustdata.contrastive import optim, steps
from robustdata.contrastive import config as contrastive_config
from robustdata.contrastive import data as contrastive_data
from robustdata.registry import ConfigError
from tests.contrastive.conftest import tiny_model


def _config(augment: bool, name: str = "shapes"):
  config = importlib.import_module(f"configs.safeclip.{name}").get_config()
  with config.unlocked():
    config.contrastive.augment = augment
  return config


def _captions():
  """Three distinguishable caption arrays: the original and the two EDA views."""
  tokens = np.full((4, 6), 1, np.int32)
  return tokens, {"eda1": tokens + 1, "eda2": tokens + 2}


@pytest.mark.parametrize("augment", [False, True])
def test_step_tokens_of_the_safeclip_passes(augment):
  tokens, views = _captions()
  config = _config(augment)
  # The unimodal loss always compares the two EDA views.
  first, second = contrastive_data.step_tokens(config, "unimodal", tokens, views)
  np.testing.assert_array_equal(first, views["eda1"])
  np.testing.assert_array_equal(second, views["eda2"])
  # The CLIP pass (Phases B and C): EDA views under cross_aug, else the original captions.
  first, second = contrastive_data.step_tokens(config, "cross_clip", tokens, views)
  np.testing.assert_array_equal(first, views["eda1"] if augment else tokens)
  np.testing.assert_array_equal(second, views["eda2"] if augment else tokens)


def test_unimodal_step_augments_whatever_augment_says(splits):
  """`augment` reaches the CLIP pass only: the unimodal step's loss is the same with both
  settings and differs from the loss of un-augmented image views."""
  model = tiny_model(splits)
  tx = optim.make_optimizer(learning_rate=1e-3)
  state = steps.create_state(model, tx, rng=jax.random.PRNGKey(0),
                             image_shape=splits.train.x.shape[1:],
                             context_length=splits.info["context_length"], pools={})
  b = 16
  tokens, views = splits.train.extras["tokens"][:b], {"eda1": None, "eda2": None}
  views["eda1"] = np.roll(tokens, 1, axis=1)  # any caption view differing from the original
  views["eda2"] = np.roll(tokens, 2, axis=1)
  first, second = contrastive_data.step_tokens(_config(False), "unimodal", tokens, views)
  batch = {"x": jnp.asarray(splits.train.x[:b]), "tokens": jnp.asarray(first, jnp.int32),
           "tokens_aug": jnp.asarray(second, jnp.int32), "mask": jnp.ones((b,), jnp.float32)}

  def loss(augment: bool) -> float:
    step = jax.jit(steps.make_step(model, tx, kind="unimodal", augment=augment))
    return float(step(state, batch, jnp.float32(1e-3))[1]["loss"])

  np.testing.assert_allclose(loss(False), loss(True), rtol=1e-6)

  @jax.jit  # one program: an eager forward compiles each of its operations on its own
  def unaugmented(params):
    img = model.apply({"params": params}, batch["x"], train=True, method=model.encode_image)
    t1 = model.apply({"params": params}, batch["tokens"], train=True, method=model.encode_text)
    t2 = model.apply({"params": params}, batch["tokens_aug"], train=True,
                     method=model.encode_text)
    scale = params["logit_scale"]
    return 0.5 * (losses.unimodal_loss(img, img, scale) + losses.unimodal_loss(t2, t1, scale))

  assert abs(loss(False) - float(unaugmented(state.params))) > 1e-3


def test_shapes_config_trains_the_clip_pass_unaugmented_and_cc3m_keeps_cross_aug():
  get = lambda name: importlib.import_module(f"configs.safeclip.{name}").get_config()
  assert get("shapes").contrastive.augment is False
  assert get("cc3m").contrastive.augment is True


def test_a_non_bool_augment_is_named():
  config = _config(False)
  with config.unlocked():
    config.contrastive.augment = None
  with pytest.raises(ConfigError, match="config.contrastive.augment=None (must be|is not) a bool"):
    contrastive_config.validate(config, num_devices=1)
