"""A tiny CLIP trains a few steps on captioned_shapes and its loss decreases;
zero-shot and linear-probe evaluations run on it; its jitted init equals an eager one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.evals.linear_probe import linear_probe
from robustdata.evals.zero_shot import class_embeddings, zero_shot_accuracy
from robustdata.models.clip import LOGIT_SCALE_MAX
from robustdata.models.vit import normal_init
from tests.contrastive.conftest import encode, run_steps
from tests.contrastive.conftest import tiny_model as _model


@pytest.mark.slow  # test_contrastive_trainer.py covers training and evals in the fast suite
def test_tiny_clip_loss_decreases_and_evals_run(splits):
  model = _model(splits)
  state, hist = run_steps(model, splits.train, kind="clip", steps=25, batch_size=32,
                          peak_lr=3e-3, warmup_steps=3, seed=0)
  losses = [h["loss"] for h in hist]
  assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.2, losses
  assert all(0.0 <= h["logit_scale"] <= LOGIT_SCALE_MAX + 1e-6 for h in hist)
  info = splits.info
  encode_text = lambda t: encode(model, state.params, t, method="encode_text")
  cls = class_embeddings(encode_text, info["tokenizer"], info["class_names"], info["prompt_templates"])
  img = encode(model, state.params, splits.test.x)
  acc = zero_shot_accuracy(img, splits.test.y, cls, topk=(1, 5))
  assert 0.0 <= acc["top1"] <= acc["top5"] <= 1.0
  task = info["downstream"]["color"]
  feats = lambda d: encode(model, state.params, d.x, method="image_features")
  probe = linear_probe(feats(task["train"]), task["train"].y, feats(task["test"]), task["test"].y)
  assert probe["linear_probe_accuracy"] > 1.5 / task["num_classes"]




def test_jitted_init_gives_the_bits_of_an_eager_init(splits):
  # create_state initialises under jit; flax's own normal initializer can differ from an eager
  # init by one ulp there (XLA fuses its scaling); models.vit.normal_init does not. The ViT
  # tower has all four normal-initialised parameters (text and image embeddings).
  model = _model(splits, image_tower="vit")
  args = (jax.random.PRNGKey(4), jnp.zeros((1, 24, 24, 3)),
          jnp.zeros((1, splits.info["context_length"]), jnp.int32))
  eager, jitted = model.init(*args), jax.jit(model.init)(*args)
  leaves = jax.tree_util.tree_leaves_with_path(eager)
  assert len(leaves) == len(jax.tree_util.tree_leaves(jitted))
  for (path, a), b in zip(leaves, jax.tree_util.tree_leaves(jitted)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
  # normal_init is flax's normal initializer, bit for bit.
  key, shape = jax.random.PRNGKey(3), (100, 32)
  np.testing.assert_array_equal(np.asarray(jax.nn.initializers.normal(0.02)(key, shape)),
                                np.asarray(jax.jit(lambda k: normal_init(0.02)(k, shape))(key)))
