"""CleanCLIP's fine-tuning step carries the whole objective of spec §5: the multimodal CLIP
loss of the un-augmented pair plus the unimodal terms against an augmented image view and the
EDA caption, weighted λ1 = clip_weight and λ2 = inmodal_weight (1 and 1 in the shapes config)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata import losses
from robustdata.contrastive import optim, steps
from robustdata.data.image_augment import augment_batch
from robustdata.data.caption_augment import eda_tokens
from tests.contrastive.conftest import plain_clip_loss, tiny_model


def _batch(splits, b: int = 16):
  tokens = splits.train.extras["tokens"][:b].astype(np.int32)
  tokens_aug = eda_tokens(splits.train.extras["tokens"][:b], np.random.default_rng(0),
                          tokenizer=splits.info["tokenizer"],
                          synonyms=splits.info["synonyms"]).astype(np.int32)
  assert (tokens_aug != tokens).any()  # the EDA view differs from the caption
  return {"x": jnp.asarray(splits.train.x[:b]), "tokens": jnp.asarray(tokens),
          "tokens_aug": jnp.asarray(tokens_aug), "mask": jnp.ones((b,), jnp.float32)}


def _model_state(splits):
  """(tiny model, optimizer, fresh train state) for one step of a given kind."""
  model = tiny_model(splits)
  tx = optim.make_optimizer(learning_rate=1e-3)
  state = steps.create_state(model, tx, rng=jax.random.PRNGKey(0),
                             image_shape=splits.train.x.shape[1:],
                             context_length=splits.info["context_length"], pools={})
  return model, tx, state


def test_cleanclip_step_is_multimodal_plus_unimodal(splits):
  # Two weights that differ from 1 and from each other: the loss below tells them apart, and a
  # step compiles once (the weights are constants of its program).
  model, tx, state = _model_state(splits)
  batch = _batch(splits)
  clip_w, inmodal_w = 0.5, 2.0
  step = jax.jit(steps.make_step(model, tx, kind="cleanclip", clip_weight=clip_w,
                                 inmodal_weight=inmodal_w))
  _, metrics = step(state, batch, jnp.float32(1e-3))

  # The expected loss, rebuilt from the pieces with the step's own augmentation key.
  _, k2 = jax.random.split(jax.random.fold_in(state.rng, state.step))
  params = state.params
  enc_i = jax.jit(lambda im: model.apply({"params": params}, im, train=True,
                                         method=model.encode_image))
  enc_t = jax.jit(lambda t: model.apply({"params": params}, t, train=True,
                                        method=model.encode_text))
  img, txt = enc_i(batch["x"]), enc_t(batch["tokens"])
  img_aug, txt_aug = enc_i(jax.jit(augment_batch)(k2, batch["x"])), enc_t(batch["tokens_aug"])
  scale = params["logit_scale"]
  multimodal = losses.clip_loss(img, txt, scale)
  image_term = losses.unimodal_loss(img, img_aug, scale)
  text_term = losses.unimodal_loss(txt, txt_aug, scale)
  np.testing.assert_allclose(float(metrics["clip_loss"]), float(multimodal), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["inmodal_loss"]), float(0.5 * (image_term + text_term)),
                             rtol=1e-4)
  np.testing.assert_allclose(float(metrics["loss"]),
                             float(clip_w * multimodal + inmodal_w * 0.5 * (image_term + text_term)),
                             rtol=1e-4)
  # Both unimodal terms compare against a different view (not the trivial self-match).
  assert float(jnp.abs(img_aug - img).max()) > 1e-3
  assert float(jnp.abs(txt_aug - txt).max()) > 1e-3
  assert float(image_term) > 0 and float(text_term) > 0


def test_cleanclip_shapes_config_uses_the_spec_weights():
  c = importlib.import_module("configs.cleanclip.shapes").get_config().contrastive
  assert c.clip_weight == 1.0 and c.inmodal_weight == 1.0


@pytest.mark.parametrize("augment", [False, True])
def test_cross_clip_without_augmentation_is_plain_clip(splits, augment):
  """SafeCLIP's cross_clip step: with augment=False it is the CLIP loss of the un-augmented
  pair; with augment=True it uses augmented image views and the EDA caption (and differs)."""
  model, tx, state = _model_state(splits)
  batch = _batch(splits)
  step = jax.jit(steps.make_step(model, tx, kind="cross_clip", augment=augment))
  _, metrics = step(state, batch, jnp.float32(1e-3))
  plain = plain_clip_loss(model, state.params, batch)
  if augment:
    assert abs(float(metrics["loss"]) - plain) > 1e-4
  else:
    np.testing.assert_allclose(float(metrics["loss"]), plain, rtol=1e-5)
