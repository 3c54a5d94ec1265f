"""A tiny CLIP trains a few steps on captioned_shapes and its loss decreases;
zero-shot and linear-probe evaluations run on it; create_state gives the trainer's initial
parameters."""

import jax
import numpy as np
import pytest

from robustdata.contrastive import optim, steps
from robustdata.evals.linear_probe import linear_probe
from robustdata.evals.zero_shot import class_embeddings, zero_shot_accuracy
from robustdata.models.clip import LOGIT_SCALE_MAX
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


def test_create_state_starts_from_the_trainers_bits(splits):
  # The trainer initialises inside a jitted init_state; create_state (used directly by tests
  # and tools) jits its init too, so both give the same parameters. An eager init would differ
  # by an ulp in the normal-initialised embeddings. The ViT tower has all of those.
  model = _model(splits, image_tower="vit")
  tx = optim.make_optimizer(learning_rate=1e-3)
  make = lambda key: steps.create_state(model, tx, rng=key, image_shape=(24, 24, 3),
                                        context_length=splits.info["context_length"],
                                        pools={}).params
  key = jax.random.PRNGKey(4)
  direct, in_trainer = make(key), jax.jit(make)(key)
  leaves = jax.tree_util.tree_leaves_with_path(direct)
  assert len(leaves) == len(jax.tree_util.tree_leaves(in_trainer))
  for (path, a), b in zip(leaves, jax.tree_util.tree_leaves(in_trainer)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
