"""RoCLIP and CleanCLIP train steps run; optimiser decay mask and logit-scale clamp;
augmentations are jit-able, seeded and in range."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from robustdata.contrastive import optim
from robustdata.data import image_augment as augment
from robustdata.data.caption_augment import eda_tokens
from robustdata.models.clip import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX
from tests.contrastive.conftest import run_steps
from tests.contrastive.conftest import tiny_model as _model


@pytest.mark.slow  # the trainer smoke tests run these objectives in the fast suite
def test_roclip_and_cleanclip_steps_run(splits):
  model = _model(splits)
  state, hist = run_steps(model, splits.train, kind="roclip_match", steps=2, batch_size=32,
                          pool_size=96, seed=1)
  pool = state.pools["text"]
  assert int(pool.filled) == 96 and int(pool.ptr) == 64 and np.isfinite(hist[-1]["loss"])
  tokens_aug = eda_tokens(splits.train.extras["tokens"], np.random.default_rng(0),
                          tokenizer=splits.info["tokenizer"], synonyms=splits.info["synonyms"])
  _, hist = run_steps(_model(splits), splits.train, kind="cleanclip", steps=2, batch_size=32,
                      seed=2, tokens_aug=tokens_aug)
  assert {"clip_loss", "inmodal_loss"} <= set(hist[0]) and np.isfinite(hist[-1]["loss"])


def test_weight_decay_mask_and_logit_scale_clamp(splits):
  model = _model(splits, image_tower="vit")
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 24, 24, 3)),
                               jnp.zeros((1, 16), jnp.int32))["params"]
  assert float(params["logit_scale"]) == pytest.approx(LOGIT_SCALE_INIT)
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): v for path, v in
          jax.tree_util.tree_flatten_with_path(optim.weight_decay_mask(params))[0]}
  assert flat["logit_scale"] is False
  assert all(v is False for k, v in flat.items() if "ln_" in k or k.endswith("bias"))
  assert flat["text/block_0/mlp_in/kernel"] is True and flat["image_projection/kernel"] is True
  assert flat["text/token_embedding/embedding"] is True
  clamped = optim.clamp_logit_scale({**params, "logit_scale": jnp.float32(9.0)})
  assert float(clamped["logit_scale"]) == pytest.approx(LOGIT_SCALE_MAX)
  assert float(optim.clamp_logit_scale({"logit_scale": jnp.float32(-1.0)})["logit_scale"]) == 0.0


def test_augmentations_are_jittable_seeded_and_in_range():
  x = jnp.asarray(np.random.default_rng(0).random((4, 24, 24, 3)), jnp.float32)
  fn = jax.jit(augment.augment_batch)
  a1, a2 = fn(jax.random.PRNGKey(0), x), fn(jax.random.PRNGKey(0), x)
  assert a1.shape == x.shape and float(a1.min()) >= -1e-6 and float(a1.max()) <= 1 + 1e-6
  np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
  assert float(jnp.abs(fn(jax.random.PRNGKey(1), x) - a1).max()) > 0.01
  full = jax.jit(lambda k, im: augment.random_resized_crop(k, im, scale=(1.0, 1.0), ratio=(1.0, 1.0)))(
      jax.random.PRNGKey(0), x[0])
  np.testing.assert_allclose(np.asarray(full), np.asarray(x[0]), atol=1e-5)
  flip = jax.jit(lambda k, im: augment.random_flip(k, im, p=1.0))
  np.testing.assert_array_equal(np.asarray(flip(jax.random.PRNGKey(0), x[0])),
                                np.asarray(x[0, :, ::-1]))
