"""A tiny CLIP trains a few steps on captioned_shapes and its loss decreases;
zero-shot and linear-probe evaluations run on it."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from robustdata.contrastive import augment, optim
from robustdata.contrastive.train import encode_dataset, train_clip
from robustdata.data.caption_augment import eda_tokens
from robustdata.data.captioned_shapes import load_captioned_shapes
from robustdata.evals.linear_probe import linear_probe
from robustdata.evals.zero_shot import class_embeddings, zero_shot_accuracy
from robustdata.models.clip import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX, make_clip

TINY = {"embed_dim": 32, "cnn_widths": (8, 16), "text_width": 32, "text_depth": 1,
        "text_heads": 2, "vit_width": 32, "vit_depth": 1, "vit_heads": 2, "vit_patch_size": 6}


@pytest.fixture(scope="module")
def splits():
  return load_captioned_shapes({"num_train": 384, "num_val": 8, "num_test": 64, "context_length": 16,
                                "num_downstream_train": 64, "num_downstream_test": 64})


def _model(splits, **kw):
  return make_clip({**TINY, **kw}, vocab_size=splits.info["vocab_size"],
                   context_length=splits.info["context_length"])


@pytest.mark.slow  # test_contrastive_trainer.py covers training and evals in the fast suite
def test_tiny_clip_loss_decreases_and_evals_run(splits):
  model = _model(splits)
  state, hist = train_clip(model, splits.train, steps=25, batch_size=32, peak_lr=3e-3,
                           warmup_steps=3, seed=0)
  losses = [h["loss"] for h in hist]
  assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.2, losses
  assert all(0.0 <= h["logit_scale"] <= LOGIT_SCALE_MAX + 1e-6 for h in hist)
  info = splits.info
  encode_text = lambda t: encode_dataset(model, state.params, t, method="encode_text")
  cls = class_embeddings(encode_text, info["tokenizer"], info["class_names"], info["prompt_templates"])
  img = encode_dataset(model, state.params, splits.test.x)
  acc = zero_shot_accuracy(img, splits.test.y, cls, topk=(1, 5))
  assert 0.0 <= acc["top1"] <= acc["top5"] <= 1.0
  task = info["downstream"]["color"]
  feats = lambda d: encode_dataset(model, state.params, d.x, method="image_features")
  probe = linear_probe(feats(task["train"]), task["train"].y, feats(task["test"]), task["test"].y)
  assert probe["linear_probe_accuracy"] > 1.5 / task["num_classes"]


