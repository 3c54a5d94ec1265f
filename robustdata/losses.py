"""Pure losses.

Supervised (per-example): cross-entropy and the label-noise losses (ELR, mixup); their
reductions (weights, masks, group weights) happen in objectives and gradient rules.

Contrastive losses: symmetric CLIP InfoNCE (full-logits and local-loss forms), unimodal
InfoNCE / NT-Xent / nearest-neighbour losses (SafeCLIP, CleanCLIP), RoCLIP's matched loss.

All take L2-normalised embeddings and `logit_scale` (the log temperature; logits are
exp(logit_scale)·cos) and compute logits and softmax in float32. An optional `mask` (1 for real
rows, 0 for padding) removes padded rows and columns, so a padded batch gives the loss of its
real rows. Every loss is the mean over the *global* batch: under `jit` with a batch sharded on
a mesh, `clip_loss` is exact (GSPMD inserts the gathers); `clip_loss_local` is the form for
`shard_map` (each shard's rows against all columns, spec §1 mode 3) and needs no extra scaling:
its value and gradients equal the single-device ones, unlike the reference 1/W gradient.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, *,
                  label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example softmax cross-entropy, (B, C) logits and (B,) int labels -> (B,).

  With label smoothing eps the target is (1 - eps) * onehot + eps / C.
  """
  num_classes = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=logp.dtype)
  if label_smoothing:
    onehot = (1.0 - label_smoothing) * onehot + label_smoothing / num_classes
  return -jnp.sum(onehot * logp, axis=-1)



# Early-learning regularisation (ELR; Liu et al., NeurIPS 2020). The softmax is clipped to
# [ELR_CLIP, 1 - ELR_CLIP] in both the target update and the regulariser, which keeps
# 1 - <t, p> >= ELR_CLIP (targets sum to at most 1).
ELR_CLIP = 1e-4


def elr_probabilities(logits: jnp.ndarray) -> jnp.ndarray:
  """softmax(logits) clipped to [ELR_CLIP, 1 - ELR_CLIP] (no renormalisation), (B, C)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.clip(probs, ELR_CLIP, 1.0 - ELR_CLIP)


def elr_target_update(targets: jnp.ndarray, logits: jnp.ndarray, *, beta: float) -> jnp.ndarray:
  """The temporal ensemble t <- beta t + (1 - beta) p / sum(p), p = the clipped softmax of
  `logits` (no gradient flows into the targets), (B, C) -> (B, C)."""
  probs = jax.lax.stop_gradient(elr_probabilities(logits))
  return beta * targets + (1.0 - beta) * probs / jnp.sum(probs, axis=-1, keepdims=True)


def elr_regularizer(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Per-example log(1 - <t, p>), p the clipped softmax of `logits` and t the (already
  updated) targets, treated as constants. Minimising it pulls the prediction towards the
  targets, so the model keeps what it learnt early on."""
  agreement = jnp.sum(jax.lax.stop_gradient(targets) * elr_probabilities(logits), axis=-1)
  return jnp.log(1.0 - agreement)


def elr_loss(logits: jnp.ndarray, labels: jnp.ndarray, targets: jnp.ndarray, *, lam: float,
             label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example ELR loss CE(logits, y) + lam * log(1 - <t, p>) (`elr_regularizer`)."""
  ce = cross_entropy(logits, labels, label_smoothing=label_smoothing)
  return ce + lam * elr_regularizer(logits, targets)


# mixup (Zhang et al., ICLR 2018): one lambda ~ Beta(alpha, alpha) and one permutation per batch.


def mixup_inputs(x: jnp.ndarray, partner: jnp.ndarray, lam: jnp.ndarray) -> jnp.ndarray:
  """lam * x + (1 - lam) * x[partner] (partner: a permutation of the batch rows)."""
  lam = jnp.asarray(lam, x.dtype)
  return lam * x + (1.0 - lam) * x[partner]


def mixup_loss(logits: jnp.ndarray, labels: jnp.ndarray, partner: jnp.ndarray, lam: jnp.ndarray,
               *, label_smoothing: float = 0.0) -> jnp.ndarray:
  """Per-example lam * CE(logits, y) + (1 - lam) * CE(logits, y[partner]): the cross-entropy
  against the mixed one-hot target lam e_y + (1 - lam) e_y[partner]."""
  own = cross_entropy(logits, labels, label_smoothing=label_smoothing)
  other = cross_entropy(logits, labels[partner], label_smoothing=label_smoothing)
  return lam * own + (1.0 - lam) * other


# --- Contrastive losses. ---

_NEG = -1e30  # Logit of a masked-out column: exp underflows to exactly 0.


def _logits(q: jnp.ndarray, k: jnp.ndarray, logit_scale: jnp.ndarray) -> jnp.ndarray:
  """exp(logit_scale) · q kᵀ in float32 at full matmul precision."""
  q, k = q.astype(jnp.float32), k.astype(jnp.float32)
  return jnp.exp(logit_scale.astype(jnp.float32)) * jnp.matmul(
      q, k.T, precision=lax.Precision.HIGHEST)


def _row_ce(logits: jnp.ndarray, targets: jnp.ndarray,
            col_mask: Optional[jnp.ndarray]) -> jnp.ndarray:
  """Per-row cross-entropy of `logits` (R, C) with integer `targets` (R,)."""
  if col_mask is not None:
    logits = jnp.where(col_mask[None, :] > 0, logits, _NEG)
  picked = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
  return jax.nn.logsumexp(logits, axis=1) - picked


def _masked_mean(values: jnp.ndarray, mask: Optional[jnp.ndarray]) -> jnp.ndarray:
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def clip_loss(image_emb: jnp.ndarray, text_emb: jnp.ndarray, logit_scale: jnp.ndarray, *,
              mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """½[CE(s·I Tᵀ) + CE(s·T Iᵀ)] with diagonal targets over the whole (global) batch."""
  logits = _logits(image_emb, text_emb, logit_scale)
  targets = jnp.arange(logits.shape[0])
  rows = _row_ce(logits, targets, mask)
  cols = _row_ce(logits.T, targets, mask)
  return 0.5 * (_masked_mean(rows, mask) + _masked_mean(cols, mask))


def clip_loss_local(image_local: jnp.ndarray, text_local: jnp.ndarray, logit_scale: jnp.ndarray,
                    *, axis_name: str, mask_local: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """The global CLIP loss computed inside `shard_map` from this shard's rows only.

  Gathers all embeddings with a differentiable tiled `all_gather` (its transpose is a
  reduce-scatter, so negatives receive their gradient), builds the (b, N) logits of the local
  rows against all columns in both directions with targets offset by `axis_index·b`, and sums
  the row losses over shards with `psum`. Memory is b×N instead of N×N.
  """
  b = image_local.shape[0]
  image_all = lax.all_gather(image_local, axis_name, tiled=True)
  text_all = lax.all_gather(text_local, axis_name, tiled=True)
  mask_all = None if mask_local is None else lax.all_gather(mask_local, axis_name, tiled=True)
  targets = lax.axis_index(axis_name) * b + jnp.arange(b)
  rows = _row_ce(_logits(image_local, text_all, logit_scale), targets, mask_all)
  cols = _row_ce(_logits(text_local, image_all, logit_scale), targets, mask_all)
  weight = (jnp.ones((b,), jnp.float32) if mask_local is None
            else mask_local.astype(jnp.float32))
  total = lax.psum(jnp.sum(weight * (rows + cols)), axis_name)
  count = lax.psum(jnp.sum(weight), axis_name)
  return 0.5 * total / jnp.maximum(count, 1.0)


def clip_loss_chunked(image_emb: jnp.ndarray, text_emb: jnp.ndarray, logit_scale: jnp.ndarray,
                      *, num_chunks: int, mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """The local-loss form on one device: row blocks of size N/num_chunks against all columns.

  Same value as `clip_loss`; `lax.map` over blocks keeps at most (N/num_chunks)×N logits live.
  """
  n, d = image_emb.shape
  if n % num_chunks:
    raise ValueError(f"batch {n} is not divisible by num_chunks={num_chunks}")
  b = n // num_chunks
  weight = jnp.ones((n,), jnp.float32) if mask is None else mask.astype(jnp.float32)

  def block(args):
    img, txt, w, start = args
    targets = start + jnp.arange(b)
    rows = _row_ce(_logits(img, text_emb, logit_scale), targets, mask)
    cols = _row_ce(_logits(txt, image_emb, logit_scale), targets, mask)
    return jnp.sum(w * (rows + cols))

  parts = lax.map(block, (image_emb.reshape(num_chunks, b, d), text_emb.reshape(num_chunks, b, d),
                          weight.reshape(num_chunks, b), jnp.arange(num_chunks) * b))
  return 0.5 * jnp.sum(parts) / jnp.maximum(jnp.sum(weight), 1.0)


def make_sharded_clip_loss(mesh: jax.sharding.Mesh, *, axis_name: str = "data"):
  """`(image, text, logit_scale, mask) -> loss` running `clip_loss_local` under `shard_map`.

  Embeddings and mask are sharded on `axis_name` along the batch; `logit_scale` is replicated.
  Differentiate the returned function with `jax.grad` as usual.
  """
  from jax.sharding import PartitionSpec as P

  def local(image, text, logit_scale, mask):
    return clip_loss_local(image, text, logit_scale, axis_name=axis_name, mask_local=mask)

  return jax.shard_map(local, mesh=mesh, in_specs=(P(axis_name), P(axis_name), P(), P(axis_name)),
                       out_specs=P())


def unimodal_loss(query: jnp.ndarray, key: jnp.ndarray, logit_scale: jnp.ndarray, *,
                  mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """One-directional InfoNCE CE(s·Q Kᵀ), diagonal targets (CleanCLIP/SafeCLIP unimodal term)."""
  logits = _logits(query, key, logit_scale)
  return _masked_mean(_row_ce(logits, jnp.arange(logits.shape[0]), mask), mask)


def nt_xent(z1: jnp.ndarray, z2: jnp.ndarray, *, temperature: float | jnp.ndarray = 0.1,
            mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """SimCLR NT-Xent over 2N views: each view's positive is the other view, self excluded."""
  n = z1.shape[0]
  z = jnp.concatenate([z1, z2], axis=0).astype(jnp.float32)
  logits = jnp.matmul(z, z.T, precision=lax.Precision.HIGHEST) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), _NEG, logits)
  targets = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  mask2 = None if mask is None else jnp.concatenate([mask, mask])
  return _masked_mean(_row_ce(logits, targets, mask2), mask2)


def nn_unimodal_loss(image_view: jnp.ndarray, image_nn: jnp.ndarray, text_view: jnp.ndarray,
                     text_nn: jnp.ndarray, logit_scale: jnp.ndarray, *,
                     mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """SafeCLIP's NNCLR-style unimodal loss ½[CE(s·v2ᴵ nᴵᵀ) + CE(s·v2ᵀ nᵀᵀ)] (nn rows detached).

  `image_nn`/`text_nn` are the pool nearest neighbours of the first view (or the first view
  itself, SimCLR-style, when no pool is used).
  """
  image_nn, text_nn = lax.stop_gradient(image_nn), lax.stop_gradient(text_nn)
  return 0.5 * (unimodal_loss(image_view, image_nn, logit_scale, mask=mask)
                + unimodal_loss(text_view, text_nn, logit_scale, mask=mask))


def roclip_loss(image_emb: jnp.ndarray, matched_text: jnp.ndarray, logit_scale: jnp.ndarray, *,
                mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """RoCLIP matching-epoch loss: CLIP loss of images against their nearest pool captions.

  Pool rows are detached, so no gradient reaches the text tower (as in the reference).
  """
  return clip_loss(image_emb, lax.stop_gradient(matched_text), logit_scale, mask=mask)


def cleanclip_loss(image_emb: jnp.ndarray, text_emb: jnp.ndarray, image_aug: jnp.ndarray,
                   text_aug: jnp.ndarray, logit_scale: jnp.ndarray, *, clip_weight: float = 1.0,
                   inmodal_weight: float = 1.0, mask: Optional[jnp.ndarray] = None
                   ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """CleanCLIP fine-tuning objective λ1·CLIP(I,T) + λ2·½[CE(s·I Ĩᵀ) + CE(s·T T̃ᵀ)].

  Unimodal terms are one-directional (rows = un-augmented embeddings), as in the reference.
  Returns (loss, {'clip_loss', 'inmodal_loss'}).
  """
  multimodal = clip_loss(image_emb, text_emb, logit_scale, mask=mask)
  inmodal = 0.5 * (unimodal_loss(image_emb, image_aug, logit_scale, mask=mask)
                   + unimodal_loss(text_emb, text_aug, logit_scale, mask=mask))
  loss = clip_weight * multimodal + inmodal_weight * inmodal
  return loss, {"clip_loss": multimodal, "inmodal_loss": inmodal}
