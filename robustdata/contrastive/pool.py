"""RoCLIP's FIFO pool of caption embeddings and nearest-neighbour matching (pure functions).

The pool is an (S, d) array with a write pointer `ptr` and a `filled` count, carried in the
train state. Rows are written in order from row 0, so rows [0, filled) hold real embeddings.

Deliberate choices (spec §2, §8):
- `init_pool` pre-fills the pool with real (normalised) caption embeddings by default; with
  `prefill_random=True` it reproduces the reference: N(0, 1) rows, un-normalised, counted as
  filled (their norm ≈ √d makes the first matching epoch's logits ~√d times too large).
- `enqueue` wraps around (every row of the batch is written, ring-buffer style). With
  `drop_overflow=True` it reproduces the reference: at the wrap only S - ptr rows are written,
  the rest of the batch is dropped and ptr becomes 0.
- `nearest` compares normalised queries with normalised pool rows (cosine), ignores unfilled
  rows and returns the *raw* pool rows with the gradient stopped.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from robustdata.models.clip import l2_normalize
from robustdata.registry import ConfigError


@flax.struct.dataclass
class Pool:
  """FIFO pool state: `embeddings` (S, d), write pointer `ptr` and `filled` rows (int32)."""

  embeddings: jnp.ndarray
  ptr: jnp.ndarray
  filled: jnp.ndarray

  @property
  def size(self) -> int:
    return self.embeddings.shape[0]


def check_pool_size(pool_size: int, batch_size: int) -> None:
  """ConfigError unless the pool holds at least one global batch."""
  if pool_size < batch_size:
    raise ConfigError(f"config.contrastive.pool_size={pool_size} must be >= the global batch size "
                      f"{batch_size} (the pool must hold a whole batch of captions)")


def check_break_epoch(break_epoch: int) -> None:
  """ConfigError unless the matching period K is positive."""
  if int(break_epoch) <= 0:
    raise ConfigError(f"config.contrastive.break_epoch={break_epoch} must be a positive integer "
                      "(every K-th epoch is a matching epoch)")


def is_matching_epoch(epoch: int, *, break_epoch: int) -> bool:
  """True on RoCLIP matching epochs: epochs K, 2K, ... (epochs counted from 1)."""
  check_break_epoch(break_epoch)
  return epoch % break_epoch == 0


def init_pool(pool_size: int, dim: int, *, prefill: Optional[jnp.ndarray] = None,
              prefill_random: bool = False, key: Optional[jax.Array] = None,
              batch_size: int = 1) -> Pool:
  """A pool of `pool_size` rows; pre-filled from `prefill` (real embeddings, normalised).

  `prefill` may have fewer rows than the pool (the rest stays empty) or more (the last
  `pool_size` rows are kept, as FIFO would). `prefill_random=True` is the reference defect.
  """
  check_pool_size(pool_size, batch_size)
  if prefill_random:
    if key is None:
      raise ConfigError("config.contrastive.pool_prefill='random' needs a PRNG key (init_pool key=...)")
    emb = jax.random.normal(key, (pool_size, dim), jnp.float32)
    return Pool(emb, jnp.zeros((), jnp.int32), jnp.asarray(pool_size, jnp.int32))
  emb = jnp.zeros((pool_size, dim), jnp.float32)
  pool = Pool(emb, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
  if prefill is not None:
    rows = l2_normalize(jnp.asarray(prefill))[-pool_size:]
    pool = enqueue(pool, rows)
  return pool


def enqueue(pool: Pool, batch: jnp.ndarray, *, drop_overflow: bool = False,
            mask: Optional[jnp.ndarray] = None) -> Pool:
  """Writes `batch` (B, d) at the pointer, oldest rows first out; jit-able.

  Rows with `mask` 0 (padding) are not written and do not advance the pointer.
  """
  s, b = pool.size, batch.shape[0]
  if b > s:
    raise ConfigError(f"config.contrastive.pool_size={s} must be >= the batch size {b}")
  valid = jnp.ones((b,), bool) if mask is None else mask.astype(bool)
  slot = jnp.cumsum(valid) - 1  # Position of each valid row among the valid rows.
  count = jnp.sum(valid).astype(jnp.int32)
  if drop_overflow:
    written = jnp.minimum(count, s - pool.ptr)
    keep = valid & (slot < written)
    idx = jnp.where(keep, pool.ptr + slot, s)
    new_ptr = jnp.where(pool.ptr + count >= s, 0, pool.ptr + count)
  else:
    written = count
    idx = jnp.where(valid, (pool.ptr + slot) % s, s)
    new_ptr = (pool.ptr + count) % s
  emb = pool.embeddings.at[idx].set(batch.astype(pool.embeddings.dtype), mode="drop")
  filled = jnp.minimum(pool.filled + written, s)
  return Pool(emb, new_ptr.astype(jnp.int32), filled.astype(jnp.int32))


def nearest(pool: Pool, queries: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(indices (B,), rows (B, d)) of the most cosine-similar filled pool row for each query."""
  sims = jnp.matmul(l2_normalize(queries), l2_normalize(pool.embeddings).T,
                    precision=jax.lax.Precision.HIGHEST)
  sims = jnp.where(jnp.arange(pool.size)[None, :] < pool.filled, sims, -jnp.inf)
  idx = jnp.argmax(sims, axis=1)
  return idx, jax.lax.stop_gradient(pool.embeddings[idx])


def match_and_enqueue(pool: Pool, image_emb: jnp.ndarray, text_emb: jnp.ndarray, *,
                      drop_overflow: bool = False, mask: Optional[jnp.ndarray] = None
                      ) -> tuple[jnp.ndarray, Pool]:
  """One RoCLIP matching step: look up each image's nearest pool caption, *then* enqueue the
  batch's own captions (so a caption is never its own neighbour). Returns (matched, pool)."""
  _, matched = nearest(pool, image_emb)
  return matched, enqueue(pool, jax.lax.stop_gradient(text_emb), drop_overflow=drop_overflow,
                          mask=mask)


def enqueue_ids(ids: np.ndarray, ptr: int, filled: int, new: np.ndarray, *,
                drop_overflow: bool = False) -> tuple[np.ndarray, int, int]:
  """Host mirror of `enqueue` for what each pool row holds (e.g. the training row whose caption
  it embeds): writes `new` (k,) at `ptr` exactly as `enqueue` writes k valid rows. Returns
  (ids, ptr, filled); `ids` is a new array."""
  ids, s, k = np.array(ids), len(ids), len(new)
  if k > s:
    raise ConfigError(f"config.contrastive.pool_size={s} must be >= the batch size {k}")
  if drop_overflow:
    written = min(k, s - ptr)
    ids[ptr:ptr + written] = new[:written]
    return ids, (0 if ptr + k >= s else ptr + k), min(filled + written, s)
  ids[(ptr + np.arange(k)) % s] = new
  return ids, (ptr + k) % s, min(filled + k, s)
