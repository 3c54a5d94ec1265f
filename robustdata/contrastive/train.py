"""A standalone jitted CLIP train step and a short training function (CLIP, RoCLIP matching,
CleanCLIP), used by the smoke test and by the integration with the main loop.

The step is `(state, batch) -> (state, metrics)` with the state donated. A batch is a dict
with `x` (B, H, W, 3), `tokens` (B, L), `mask` (B,) and, for CleanCLIP, `tokens_aug`. Randomness
is `fold_in(state.rng, state.step)`. After the optimiser update the logit scale is clamped to
[0, ln 100]. The losses are global-batch means, so the same step is exact when `jit` receives
a batch sharded on a mesh's 'data' axis.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustdata.contrastive import losses, optim
from robustdata.contrastive import pool as pool_lib
from robustdata.contrastive.augment import augment_batch
from robustdata.data.dataset import Dataset
from robustdata.registry import ConfigError

OBJECTIVES = ("clip", "roclip_match", "cleanclip")


@flax.struct.dataclass
class CLIPState:
  """step, params, optimiser state, RoCLIP pool (or None) and the base PRNG key."""

  step: jnp.ndarray
  params: Any
  opt_state: Any
  pool: Optional[pool_lib.Pool]
  rng: jax.Array


def create_clip_state(model, tx: optax.GradientTransformation, *, rng: jax.Array,
                      image_shape: tuple[int, ...], context_length: int,
                      pool: Optional[pool_lib.Pool] = None) -> CLIPState:
  """Initialises the CLIP params on a batch of one and the optimiser state."""
  init_key, state_key = jax.random.split(rng)
  variables = jax.jit(model.init)(init_key, jnp.zeros((1, *image_shape), jnp.float32),
                         jnp.zeros((1, context_length), jnp.int32))
  params = variables["params"]
  return CLIPState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   pool=pool, rng=state_key)


def make_clip_train_step(model, tx: optax.GradientTransformation, *, objective: str = "clip",
                         augment: bool = False, drop_overflow: bool = False,
                         clip_weight: float = 1.0, inmodal_weight: float = 1.0, jit: bool = True):
  """The CLIP train step for `objective` in {'clip', 'roclip_match', 'cleanclip'}.

  'roclip_match' pairs each image with its nearest pool caption (text tower gets no
  gradient), then enqueues the batch's captions. 'cleanclip' adds the unimodal terms against
  an augmented image view and `batch['tokens_aug']`.
  """
  if objective not in OBJECTIVES:
    raise ConfigError(f"config.method={objective!r} is not known; allowed: {list(OBJECTIVES)}")

  def step(state: CLIPState, batch: dict[str, jnp.ndarray]):
    key = jax.random.fold_in(state.rng, state.step)
    k_aug, k_aug2 = jax.random.split(key)
    x, mask = batch["x"], batch["mask"]
    x_in = augment_batch(k_aug, x) if augment else x

    def loss_fn(params):
      img, txt, scale = model.apply({"params": params}, x_in, batch["tokens"], train=True)
      aux = {"text_emb": txt}
      if objective == "clip":
        loss = losses.clip_loss(img, txt, scale, mask=mask)
      elif objective == "roclip_match":
        _, matched = pool_lib.nearest(state.pool, img)
        loss = losses.roclip_loss(img, matched, scale, mask=mask)
      else:
        img_aug = model.apply({"params": params}, augment_batch(k_aug2, x), train=True,
                              method=model.encode_image)
        txt_aug = model.apply({"params": params}, batch["tokens_aug"], train=True,
                              method=model.encode_text)
        loss, parts = losses.cleanclip_loss(img, txt, img_aug, txt_aug, scale, mask=mask,
                                            clip_weight=clip_weight, inmodal_weight=inmodal_weight)
        aux.update(parts)
      aux["logit_scale"] = scale
      return loss, aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optim.clamp_logit_scale(optax.apply_updates(state.params, updates))
    new_pool = state.pool
    if objective == "roclip_match":
      new_pool = pool_lib.enqueue(state.pool, jax.lax.stop_gradient(aux["text_emb"]),
                                  drop_overflow=drop_overflow, mask=mask)
    metrics = {"loss": loss, "logit_scale": aux["logit_scale"], "grad_norm": optax.global_norm(grads)}
    metrics.update({k: aux[k] for k in ("clip_loss", "inmodal_loss") if k in aux})
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         pool=new_pool), metrics

  return jax.jit(step, donate_argnums=(0,)) if jit else step


def clip_batches(data: Dataset, *, batch_size: int, rng: np.random.Generator,
                 tokens_key: str = "tokens"):
  """Endless shuffled full batches (drop_last, as the reference) of a captioned Dataset."""
  n = len(data)
  if n < batch_size:
    raise ConfigError(f"config.train.batch_size={batch_size} exceeds the {n} training pairs")
  while True:
    perm = rng.permutation(n)
    for i in range(n // batch_size):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      batch = {"x": data.x[idx], "tokens": data.extras[tokens_key][idx],
               "mask": np.ones((batch_size,), np.float32)}
      if "tokens_aug" in data.extras:
        batch["tokens_aug"] = data.extras["tokens_aug"][idx]
      yield batch


def train_clip(model, data: Dataset, *, steps: int, batch_size: int, peak_lr: float = 1e-3,
               warmup_steps: int = 10, weight_decay: float = 0.1, seed: int = 0,
               objective: str = "clip", augment: bool = False, pool_size: int = 0,
               state: Optional[CLIPState] = None) -> tuple[CLIPState, list[dict[str, float]]]:
  """Trains `model` on `data` for `steps` steps (one warm-up + cosine phase); returns the
  state and the per-step metrics. RoCLIP matching pre-fills the pool with caption embeddings
  of the first `pool_size` pairs under the initial parameters."""
  sched = optim.warmup_cosine(peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=steps)
  tx = optim.make_optimizer(learning_rate=sched, weight_decay=weight_decay)
  key = jax.random.PRNGKey(seed)
  if state is None:
    state = create_clip_state(model, tx, rng=key, image_shape=data.x.shape[1:],
                              context_length=data.extras["tokens"].shape[1])
  if objective == "roclip_match" and state.pool is None:
    pool_lib.check_pool_size(pool_size, batch_size)
    prefill = model.apply({"params": state.params}, jnp.asarray(data.extras["tokens"][:pool_size]),
                          method=model.encode_text)
    state = state.replace(pool=pool_lib.init_pool(pool_size, prefill.shape[1], prefill=prefill,
                                                  batch_size=batch_size))
  step_fn = make_clip_train_step(model, tx, objective=objective, augment=augment)
  batches = clip_batches(data, batch_size=batch_size, rng=np.random.default_rng(seed))
  history = []
  for _ in range(steps):
    state, metrics = step_fn(state, next(batches))
    metrics = {k: float(v) for k, v in metrics.items()}
    if not np.isfinite(metrics["loss"]):
      raise FloatingPointError(f"non-finite CLIP loss at step {int(state.step)}: {metrics}")
    history.append(metrics)
  return state, history


_ENCODERS: dict[tuple[int, str], Any] = {}  # (id(model), method) -> (model, jitted encoder).


def encode_dataset(model, params: Any, x: np.ndarray, *, batch_size: int = 512,
                   method: str = "encode_image") -> np.ndarray:
  """Embeddings (or `image_features`) of every row of `x`, batched, in eval mode."""
  cache_key = (id(model), method)
  if cache_key not in _ENCODERS:
    _ENCODERS[cache_key] = (model, jax.jit(
        lambda p, b: model.apply({"params": p}, b, method=getattr(model, method))))
  fn = _ENCODERS[cache_key][1]
  return np.concatenate([np.asarray(fn(params, jnp.asarray(x[i:i + batch_size])))
                         for i in range(0, len(x), batch_size)])
