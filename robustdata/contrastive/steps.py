"""Compiled pieces of the contrastive trainer: the train state (with its caption/image pools),
one jitted step per objective kind, and the pair-score probe SafeCLIP filters with.

A step is `(state, batch, lr) -> (state, metrics)`: `batch` holds `x` (B, H, W, 3), `tokens` and
`tokens_aug` (B, L) and `mask` (B,) (1 for real rows, 0 for padding); `lr` is the learning rate
of this step (set in the injected AdamW hyperparameters, so Adam's moments carry over between
phases). Randomness is `fold_in(state.rng, state.step)`. Losses are global-batch means, exact
under `jit` with the batch sharded on the mesh's 'data' axis.

Kinds:
- `clip`: CLIP loss of (view of x, tokens); the view is augmented when `augment`.
- `roclip_match`: RoCLIP matching: each image against its nearest caption in the text pool
  (no gradient to the text tower), then the batch's captions are enqueued.
- `cleanclip`: λ1·CLIP(x, tokens) + λ2·unimodal terms against an augmented image and
  `tokens_aug` (the EDA view); the augment.py chain stands in for the reference's AutoAugment.
- `unimodal`: SafeCLIP's unimodal loss between two image views and the two caption views
  (`tokens`, `tokens_aug`); NNCLR-style against the image/text pools when they exist.
- `cross_clip`: SafeCLIP's cross-augmented CLIP ½[CE(s·v1ᴵ v2ᵀᵀ) + CE(s·v1ᵀ v2ᴵᵀ)]; with
  `augment=False` the views are the un-augmented pair (plain CLIP; the trainer then feeds the
  original captions, data.step_tokens): the shapes config's setting, since augmenting
  the 24-px images (even with the 'small' chain) slows CLIP's learning of the shapes.
- `unimodal` always augments (two identical views would make its positives trivial).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from robustdata import losses
from robustdata.contrastive import optim
from robustdata.contrastive import pool as pool_lib
from robustdata.data.image_augment import augment_batch as _augment_batch
from robustdata.models.clip import LOGIT_SCALE_MAX, l2_normalize

KINDS = ("clip", "roclip_match", "cleanclip", "unimodal", "cross_clip")


@flax.struct.dataclass
class ContrastiveState:
  """step, params, optimiser state, named FIFO pools ({} when unused) and the base PRNG key."""

  step: jnp.ndarray
  params: Any
  opt_state: Any
  pools: dict[str, pool_lib.Pool]
  rng: jax.Array


@functools.partial(jax.jit, static_argnums=0)
def _init_params(model, key: jax.Array, images: jnp.ndarray, tokens: jnp.ndarray):
  """`model.init`'s params as one program, compiled once per (equal) model."""
  return model.init(key, images, tokens)["params"]


def create_state(model, tx: optax.GradientTransformation, *, rng: jax.Array,
                 image_shape: tuple[int, ...], context_length: int,
                 pools: dict[str, pool_lib.Pool]) -> ContrastiveState:
  """Initialises the CLIP params (on a batch of one) and the optimiser state.

  `init` runs jitted, as it does inside the trainer's jitted `init_state`, so a state made
  here starts from the trainer's bits (an eager init differs in the normal-initialised
  embeddings by an ulp: XLA fuses their scaling into the sampler) and compiles once per model
  instead of once per operation (a tiny CLIP on one core: 4 s against 10 s cold; a second
  state of the same model compiles nothing).
  """
  init_key, state_key = jax.random.split(rng)
  params = _init_params(model, init_key, jnp.zeros((1, *image_shape), jnp.float32),
                        jnp.zeros((1, context_length), jnp.int32))
  return ContrastiveState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), pools=pools, rng=state_key)


def make_step(model, tx: optax.GradientTransformation, *, kind: str, augment: bool = False,
              drop_overflow: bool = False, clip_weight: float = 1.0,
              inmodal_weight: float = 1.0, aug_kwargs: dict | None = None):
  """The (un-jitted) train step of `kind` (see the module docstring); `aug_kwargs` are the
  image chain's settings (augment.chain(name); None: the reference cross_aug chain)."""
  if kind not in KINDS:
    raise ValueError(f"unknown step kind {kind!r}; allowed: {list(KINDS)}")
  aug_kwargs = dict(aug_kwargs or {})
  augment_batch = functools.partial(_augment_batch, **aug_kwargs)

  def step(state: ContrastiveState, batch: dict[str, jnp.ndarray], lr: jnp.ndarray):
    k1, k2 = jax.random.split(jax.random.fold_in(state.rng, state.step))
    x, mask = batch["x"], batch["mask"]
    view = lambda k: augment_batch(k, x) if augment else x

    def loss_fn(params):
      enc_i = lambda im: model.apply({"params": params}, im, train=True, method=model.encode_image)
      enc_t = lambda tok: model.apply({"params": params}, tok, train=True, method=model.encode_text)
      scale = jnp.clip(params["logit_scale"], 0.0, LOGIT_SCALE_MAX)
      aux: dict[str, jnp.ndarray] = {}
      if kind == "clip":
        loss = losses.clip_loss(enc_i(view(k1)), enc_t(batch["tokens"]), scale, mask=mask)
      elif kind == "roclip_match":
        img, txt = enc_i(view(k1)), enc_t(batch["tokens"])
        _, matched = pool_lib.nearest(state.pools["text"], img)
        loss = losses.roclip_loss(img, matched, scale, mask=mask)
        aux["enqueue_text"] = txt
      elif kind == "cleanclip":
        loss, parts = losses.cleanclip_loss(
            enc_i(x), enc_t(batch["tokens"]), enc_i(augment_batch(k2, x)),
            enc_t(batch["tokens_aug"]), scale, mask=mask, clip_weight=clip_weight,
            inmodal_weight=inmodal_weight)
        aux.update(parts)
      elif kind == "unimodal":
        v1, v2 = enc_i(augment_batch(k1, x)), enc_i(augment_batch(k2, x))
        t1, t2 = enc_t(batch["tokens"]), enc_t(batch["tokens_aug"])
        if state.pools:
          _, n_img = pool_lib.nearest(state.pools["image"], v1)
          _, n_txt = pool_lib.nearest(state.pools["text"], t1)
          loss = losses.nn_unimodal_loss(v2, n_img, t2, n_txt, scale, mask=mask)
          aux["enqueue_image"], aux["enqueue_text"] = v1, t1
        else:  # SimCLR-style: the first view is the positive.
          loss = 0.5 * (losses.unimodal_loss(v2, v1, scale, mask=mask)
                        + losses.unimodal_loss(t2, t1, scale, mask=mask))
      else:  # cross_clip; with augment=False it is plain CLIP on the un-augmented pair
        v1, v2 = enc_i(view(k1)), enc_i(view(k2))
        t1 = enc_t(batch["tokens"])
        t2 = enc_t(batch["tokens_aug"]) if augment else t1
        loss = 0.5 * (losses.unimodal_loss(v1, t2, scale, mask=mask)
                      + losses.unimodal_loss(t1, v2, scale, mask=mask))
      aux["logit_scale"] = scale
      return loss, aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    opt_state = optim.set_learning_rate(state.opt_state, lr)
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optim.clamp_logit_scale(optax.apply_updates(state.params, updates))
    pools = dict(state.pools)
    for name in ("image", "text"):
      if f"enqueue_{name}" in aux:
        pools[name] = pool_lib.enqueue(pools[name], jax.lax.stop_gradient(aux[f"enqueue_{name}"]),
                                       drop_overflow=drop_overflow, mask=mask)
    metrics = {"loss": loss, "logit_scale": aux["logit_scale"],
               "grad_norm": optax.global_norm(grads), "lr": jnp.asarray(lr, jnp.float32),
               "rows": jnp.sum(mask)}
    metrics.update({k: aux[k] for k in ("clip_loss", "inmodal_loss") if k in aux})
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         pools=pools), metrics

  return step


def make_score_fn(model):
  """`(params, x, tokens) -> (B,)` cosine of each un-augmented image with its caption (eval)."""
  def score(params, x, tokens):
    img = model.apply({"params": params}, x, method=model.encode_image)
    txt = model.apply({"params": params}, tokens, method=model.encode_text)
    return jnp.sum(l2_normalize(img) * l2_normalize(txt), axis=-1)
  return score
