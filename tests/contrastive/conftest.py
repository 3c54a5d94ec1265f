"""Shared fixtures of the contrastive tests: a small captioned_shapes split and a tiny CLIP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata import losses
from robustdata.contrastive import optim
from robustdata.contrastive import pool as pool_lib
from robustdata.contrastive import steps as steps_lib
from robustdata.data.captioned_shapes import load_captioned_shapes
from robustdata.models.clip import make_clip

TINY = {"embed_dim": 32, "cnn_widths": (8, 16), "text_width": 32, "text_depth": 1,
        "text_heads": 2, "vit_width": 32, "vit_depth": 1, "vit_heads": 2, "vit_patch_size": 6}


@pytest.fixture(scope="module")
def splits():
  return load_captioned_shapes({"num_train": 384, "num_val": 8, "num_test": 64, "context_length": 16,
                                "num_downstream_train": 64, "num_downstream_test": 64})


def tiny_model(splits, **kw):
  return make_clip({**TINY, **kw}, vocab_size=splits.info["vocab_size"],
                   context_length=splits.info["context_length"])


def run_steps(model, data, *, kind: str, steps: int, batch_size: int, peak_lr: float = 1e-3,
              warmup_steps: int = 1, seed: int = 0, pool_size: int = 0, tokens_aug=None):
  """`steps` jitted steps of the trainer's step of `kind` (steps.make_step) on shuffled full
  batches of `data`, one warm-up + cosine phase; RoCLIP's text pool is pre-filled with the
  captions of the first `pool_size` pairs. Returns the state and the per-step host metrics."""
  tx = optim.make_optimizer(learning_rate=peak_lr, weight_decay=0.1)
  tokens = data.extras["tokens"]
  pools = {}
  if pool_size:
    params = steps_lib.create_state(model, tx, rng=jax.random.PRNGKey(seed),
                                    image_shape=data.x.shape[1:], context_length=tokens.shape[1],
                                    pools={}).params
    prefill = jax.jit(lambda p, t: model.apply({"params": p}, t, method=model.encode_text))(
        params, jnp.asarray(tokens[:pool_size]))
    pools["text"] = pool_lib.init_pool(pool_size, prefill.shape[1], prefill=prefill,
                                       batch_size=batch_size)
  state = steps_lib.create_state(model, tx, rng=jax.random.PRNGKey(seed),
                                 image_shape=data.x.shape[1:], context_length=tokens.shape[1],
                                 pools=pools)
  step = jax.jit(steps_lib.make_step(model, tx, kind=kind), donate_argnums=(0,))
  rng, history = np.random.default_rng(seed), []
  second = tokens if tokens_aug is None else tokens_aug
  per_epoch = len(data) // batch_size
  for t in range(steps):
    if t % per_epoch == 0:
      order = rng.permutation(len(data))
    idx = order[(t % per_epoch) * batch_size:(t % per_epoch + 1) * batch_size]
    batch = {"x": data.x[idx], "tokens": tokens[idx].astype(np.int32),
             "tokens_aug": second[idx].astype(np.int32),
             "mask": np.ones((batch_size,), np.float32)}
    lr = optim.phase_learning_rate(t, peak_lr=peak_lr, warmup_steps=warmup_steps,
                                   total_steps=steps)
    state, metrics = step(state, batch, np.float32(lr))
    history.append({k: float(v) for k, v in metrics.items()})
    assert np.isfinite(history[-1]["loss"]), history[-1]
  return state, history


def plain_clip_loss(model, params, batch: dict) -> float:
  """The CLIP loss of `batch`'s un-augmented pairs under `params` (train-mode forward, the
  batch's row mask), as one jitted program: the loss a 'clip' step without augmentation
  reports for that state and batch."""
  def loss(p):
    img = model.apply({"params": p}, batch["x"], train=True, method=model.encode_image)
    txt = model.apply({"params": p}, batch["tokens"], train=True, method=model.encode_text)
    return losses.clip_loss(img, txt, p["logit_scale"], mask=batch["mask"])
  return float(jax.jit(loss)(params))


def encode(model, params, x, *, method: str = "encode_image", batch_size: int = 512):
  """Embeddings (or `image_features`) of every row of `x`, batched, in eval mode."""
  fn = jax.jit(lambda p, b: model.apply({"params": p}, b, method=getattr(model, method)))
  return np.concatenate([np.asarray(fn(params, jnp.asarray(x[i:i + batch_size])))
                         for i in range(0, len(x), batch_size)])
