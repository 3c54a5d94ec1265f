"""The named augmentation chains (`config.contrastive.aug_chain`) and RoCLIP's
`clip_warmup_epochs`: 'cross_aug' is the reference chain bit for bit, 'small' keeps colours
and left/right, both reach the train step; bad values are named ConfigErrors."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.contrastive import optim, steps
from robustdata.contrastive import config as contrastive_config
from robustdata.data import image_augment as augment
from robustdata.registry import ConfigError
from tests.contrastive.conftest import plain_clip_loss, tiny_model


def _images(n: int = 8) -> jnp.ndarray:
  return jnp.asarray(np.random.default_rng(0).random((n, 24, 24, 3)), jnp.float32)


def _augment(key, x, **chain) -> jnp.ndarray:
  """`augment_batch` of `chain` as one jitted program (eager, each operation compiles alone)."""
  return jax.jit(lambda k, images: augment.augment_batch(k, images, **chain))(key, x)


def test_cross_aug_chain_is_the_default_chain():
  x = _images()
  key = jax.random.PRNGKey(3)
  default = _augment(key, x)
  named = _augment(key, x, **augment.chain("cross_aug"))
  np.testing.assert_array_equal(np.asarray(default), np.asarray(named))
  assert augment.chain("cross_aug")["crop_scale"] == (0.08, 1.0)
  with pytest.raises(ValueError, match="unknown augmentation chain 'tiny'"):
    augment.chain("tiny")


def test_small_chain_keeps_colours_and_sides():
  # Flat colour images: crop and blur keep the colour; the reference chain's jitter and
  # grayscale change it for some keys.
  colours = jnp.asarray(np.random.default_rng(1).random((16, 1, 1, 3)), jnp.float32)
  flat = jnp.broadcast_to(colours, (16, 24, 24, 3))
  small = _augment(jax.random.PRNGKey(0), flat, **augment.chain("small"))
  np.testing.assert_allclose(np.asarray(small), np.asarray(flat), atol=1e-5)
  ref = _augment(jax.random.PRNGKey(0), flat, **augment.chain("cross_aug"))
  assert float(jnp.abs(ref - flat).max()) > 0.05
  # An image bright only in its left half stays brighter on the left (no flip; a crop keeps
  # at least half of the area, so it never shows only one side).
  half = jnp.zeros((24, 24, 3)).at[:, :12].set(1.0)
  views = _augment(jax.random.PRNGKey(1), jnp.broadcast_to(half, (64, 24, 24, 3)),
                   **augment.chain("small"))
  left, right = views[:, :, :12].mean(axis=(1, 2, 3)), views[:, :, 12:].mean(axis=(1, 2, 3))
  assert bool(jnp.all(left > right))


def test_the_step_uses_the_configured_chain(splits):
  """On flat-colour images the 'small' chain is the identity, so its augmented CLIP step has
  the un-augmented loss; the reference chain's does not."""
  model = tiny_model(splits)
  tx = optim.make_optimizer(learning_rate=1e-3)
  b = 16
  colours = np.random.default_rng(2).random((b, 1, 1, 3)).astype(np.float32)
  batch = {"x": jnp.broadcast_to(jnp.asarray(colours), (b, 24, 24, 3)),
           "tokens": jnp.asarray(splits.train.extras["tokens"][:b].astype(np.int32)),
           "mask": jnp.ones((b,), jnp.float32)}
  batch["tokens_aug"] = batch["tokens"]

  state = steps.create_state(model, tx, rng=jax.random.PRNGKey(0), image_shape=(24, 24, 3),
                             context_length=splits.info["context_length"], pools={})

  def loss(**kw):
    return float(jax.jit(steps.make_step(model, tx, kind="clip", **kw))(
        state, batch, jnp.float32(1e-3))[1]["loss"])

  # The un-augmented loss, as one jitted forward (a third step would compile a backward too).
  plain = plain_clip_loss(model, state.params, batch)
  np.testing.assert_allclose(loss(augment=True, aug_kwargs=augment.chain("small")), plain,
                             rtol=1e-5)
  assert abs(loss(augment=True, aug_kwargs=augment.chain("cross_aug")) - plain) > 1e-4


def _config(method: str, shapes: bool = True):
  module = f"configs.{method}.{'shapes' if shapes else 'cc3m'}"
  return importlib.import_module(module).get_config()


def test_shapes_configs_use_the_small_chain_and_cc3m_the_reference():
  # RoCLIP's shapes config augments the captions only (configs/roclip/shapes.py docstring).
  assert _config("roclip").contrastive.aug_chain == "none"
  assert _config("safeclip").contrastive.aug_chain == "small"
  for method in ("roclip", "safeclip"):
    c = _config(method, shapes=False).contrastive
    assert c.aug_chain == "cross_aug"
    if method == "roclip":
      assert c.clip_warmup_epochs == 0 and c.break_epoch == 2 and c.pool_size == 21845
  for method in ("clip", "cleanclip"):  # their hashed configs do not change
    assert "aug_chain" not in _config(method).contrastive


def test_clip_warmup_epochs_delays_the_first_matching_epoch():
  config = _config("roclip")
  with config.unlocked():
    config.train.epochs = 12
    config.contrastive.break_epoch = 2
    config.contrastive.clip_warmup_epochs = 0
  phases = [contrastive_config.epoch_phase(config, e) for e in range(12)]
  assert [e + 1 for e, p in enumerate(phases) if p == "roclip_match"] == [2, 4, 6, 8, 10, 12]
  with config.unlocked():
    config.contrastive.clip_warmup_epochs = 5
  phases = [contrastive_config.epoch_phase(config, e) for e in range(12)]
  # 1-based epochs 1-5 are plain CLIP; matching resumes on the next multiple of K.
  assert [e + 1 for e, p in enumerate(phases) if p == "roclip_match"] == [6, 8, 10, 12]


@pytest.mark.parametrize("method,field,value,match", [
    ("roclip", "aug_chain", "strong", "config.contrastive.aug_chain='strong'"),
    ("safeclip", "aug_chain", "", "config.contrastive.aug_chain=''"),
    ("roclip", "clip_warmup_epochs", -1, "config.contrastive.clip_warmup_epochs=-1"),
])
def test_bad_values_are_named(method, field, value, match):
  config = _config(method, shapes=True)
  with config.unlocked():
    config.contrastive[field] = value
  with pytest.raises(ConfigError, match=match):
    contrastive_config.validate(config, num_devices=1)
