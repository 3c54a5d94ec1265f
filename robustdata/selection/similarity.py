"""Similarity kernels for facility location, and blocked passes that never build the n x n matrix.

Both kernels of spec §0 are decreasing functions of the Euclidean distance d_ij:
  'craig': s_ij = M - d_ij, M = max distance over the class block (CRAIG's own code);
  'exp':   s_ij = exp(-d_ij / D), D = feature dimension (submodlib, used by CREST and DEA).
Every pass works on row blocks (at most `block` x `block` distances at once): this bounds memory
and avoids a silently wrong fused float64 max-reduction that XLA:CPU showed on n x n
intermediates with n >= 17,000.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

KERNELS = ("craig", "exp")
_HIGHEST = jax.lax.Precision.HIGHEST


def check_kernel(kernel: str) -> None:
  """Raises ConfigError unless `kernel` is one of KERNELS."""
  from robustdata.registry import ConfigError
  if kernel not in KERNELS:
    raise ConfigError(f"kernel={kernel!r} is not known; allowed values: {list(KERNELS)}")


def distances(a: jax.Array, sq_a: jax.Array, b: jax.Array, sq_b: jax.Array) -> jax.Array:
  """Euclidean distances (m, n) between rows of a and b from their squared norms (one matmul)."""
  cross = jnp.matmul(a, b.T, precision=_HIGHEST)
  return jnp.sqrt(jnp.maximum(sq_a[:, None] + sq_b[None, :] - 2.0 * cross, 0.0))


def kernel_from_distances(dist: jax.Array, kernel: str, max_distance, dim: int) -> jax.Array:
  """Applies a kernel to distances; `max_distance` is M for 'craig', `dim` is D for 'exp'."""
  if kernel == "craig":
    return max_distance - dist
  return jnp.exp(-dist / dim)


def pad_rows(x: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
  """Pads rows of x with zeros to a multiple of `multiple`; returns (padded, valid mask)."""
  n = x.shape[0]
  n_pad = -(-n // multiple) * multiple
  padded = np.zeros((n_pad,) + x.shape[1:], x.dtype)
  padded[:n] = x
  valid = np.zeros(n_pad, bool)
  valid[:n] = True
  return padded, valid


def check_blocks(n: int, block: int, where: str) -> None:
  """Raises ValueError unless `n` rows split into whole blocks of `block` rows (the row-blocked
  kernels' precondition; `pad_rows` pads to it)."""
  if block <= 0 or n % block:
    raise ValueError(f"{where}: x has {n} rows, not a multiple of block={block}; pad the rows "
                     "with similarity.pad_rows(x, block) (padded rows: weight 0, valid False)")


@functools.partial(jax.jit, static_argnames=("kernel", "block", "dim"))
def initial_gains(x: jax.Array, row_weights: jax.Array, valid: jax.Array, *, kernel: str,
                  block: int, dim: int) -> tuple[jax.Array, jax.Array]:
  """Gains of every candidate for the empty set, Σ_i w_i s_ij, and the max distance M.

  One pass over the upper-triangular block pairs (distances are symmetric, so half the work);
  `x` has a multiple of `block` rows, padded rows carry weight 0 and are not candidates.
  """
  n_pad = x.shape[0]
  check_blocks(n_pad, block, "initial_gains")
  nb = n_pad // block
  pa, pb = (jnp.asarray(v, jnp.int32) for v in np.triu_indices(nb))
  sq = jnp.sum(x * x, axis=1)
  xb, sqb = x.reshape(nb, block, -1), sq.reshape(nb, block)
  wb, vb = row_weights.reshape(nb, block), valid.reshape(nb, block)

  def body(p, carry):
    colsum, max_d = carry
    a, b = pa[p], pb[p]
    dist = distances(xb[a], sqb[a], xb[b], sqb[b])
    both = vb[a][:, None] & vb[b][None, :]
    max_d = jnp.maximum(max_d, jnp.max(jnp.where(both, dist, 0.0)))
    f = dist if kernel == "craig" else jnp.exp(-dist / dim)
    colsum = colsum.at[b].add(jnp.matmul(wb[a], f, precision=_HIGHEST))
    off_diag = (a != b).astype(x.dtype)
    colsum = colsum.at[a].add(off_diag * jnp.matmul(f, wb[b], precision=_HIGHEST))
    return colsum, max_d

  init = (jnp.zeros((nb, block), x.dtype), jnp.zeros((), x.dtype))
  colsum, max_d = jax.lax.fori_loop(0, pa.shape[0], body, init)
  colsum = colsum.reshape(-1)
  gains = max_d * jnp.sum(row_weights) - colsum if kernel == "craig" else colsum
  return jnp.where(valid, gains, -jnp.inf), max_d


@functools.partial(jax.jit, static_argnames=("block",))
def max_distance(x: jax.Array, valid: jax.Array, *, block: int) -> jax.Array:
  """Largest pairwise distance among valid rows (the CRAIG kernel's M), row-blocked (x has a
  multiple of `block` rows)."""
  check_blocks(x.shape[0], block, "max_distance")
  nb = x.shape[0] // block
  sq = jnp.sum(x * x, axis=1)

  def body(a, m):
    rows = jax.lax.dynamic_slice_in_dim(x, a * block, block)
    sq_r = jax.lax.dynamic_slice_in_dim(sq, a * block, block)
    v_r = jax.lax.dynamic_slice_in_dim(valid, a * block, block)
    dist = distances(rows, sq_r, x, sq)
    return jnp.maximum(m, jnp.max(jnp.where(v_r[:, None] & valid[None, :], dist, 0.0)))

  return jax.lax.fori_loop(0, nb, body, jnp.zeros((), x.dtype))


@functools.partial(jax.jit, static_argnames=("kernel", "block", "dim"), donate_argnames=("out",))
def similarity_matrix(x: jax.Array, max_d: jax.Array, *, kernel: str, block: int, dim: int,
                      out: jax.Array | None = None) -> jax.Array:
  """The dense (n, n) similarity, built one row block at a time (for the dense greedy)."""
  return similarity_and_gains(x, None, max_d, kernel=kernel, block=block, dim=dim, out=out)[0]


@functools.partial(jax.jit, static_argnames=("kernel", "block", "dim"), donate_argnames=("out",))
def similarity_and_gains(x: jax.Array, row_weights: jax.Array | None, max_d: jax.Array, *,
                         kernel: str, block: int, dim: int,
                         out: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
  """The dense (n, n) similarity and the empty set's gains Σ_i w_i max(s_ij, 0), in one pass.

  Each row block's share of the gains is summed while the block is being written, which saves
  the lazy greedy a separate pass over the n x n matrix. (Building only the upper-triangular
  block pairs and mirroring them was measured slower on XLA:CPU: its transposed block writes
  cost more than the matmuls they save.) Without row_weights only the matrix is built (gains
  None). `out` (n, n), donated, is written in place of a fresh matrix (`SimilarityWorkspace`).
  """
  n = x.shape[0]
  check_blocks(n, block, "similarity_and_gains")
  nb = n // block
  sq = jnp.sum(x * x, axis=1)
  w = None if row_weights is None else row_weights.astype(x.dtype)

  def body(a, carry):
    sim, gains = carry
    rows = jax.lax.dynamic_slice_in_dim(x, a * block, block)
    sq_r = jax.lax.dynamic_slice_in_dim(sq, a * block, block)
    f = kernel_from_distances(distances(rows, sq_r, x, sq), kernel, max_d, dim)
    sim = jax.lax.dynamic_update_slice_in_dim(sim, f, a * block, 0)
    if w is not None:
      w_r = jax.lax.dynamic_slice_in_dim(w, a * block, block)
      gains = gains + jnp.matmul(w_r, jnp.maximum(f, 0.0), precision=_HIGHEST)
    return sim, gains

  sim = jnp.zeros((n, n), x.dtype) if out is None else out.astype(x.dtype)
  sim, gains = jax.lax.fori_loop(0, nb, body, (sim, jnp.zeros(n, x.dtype)))
  return sim, None if w is None else gains


class SimilarityWorkspace:
  """Keeps the last dense similarity so that the next build of the same size writes into it.

  A fresh 20k x 20k float32 matrix is 1.6 GB of new memory. On the 2-core CPU VM this was
  measured on, first touching that memory (page faults) took ~0.45 s of the 1.2 s build;
  writing into a buffer already held took 0.8 s (WORKSPACE.md, selection speed). Repeated
  selections over pools of one padded size (CRAIG reselecting every `lag` epochs, a benchmark
  loop) pass one workspace to `facility_location`: the dense methods take the held matrix,
  donate it to `similarity_and_gains` and hand the result back. The memory stays held until
  `clear()` or until a build of another shape replaces it. Unsharded builds only (a mesh
  ignores it).
  """

  def __init__(self):
    self._buffer: jax.Array | None = None

  def take(self, shape: tuple[int, ...], dtype) -> jax.Array | None:
    """The held buffer if it has this shape and dtype (it is no longer held), else None (and a
    held buffer of another shape is released)."""
    buffer, self._buffer = self._buffer, None
    if buffer is None or buffer.is_deleted() or buffer.shape != tuple(shape) or (
        buffer.dtype != jnp.dtype(dtype)):
      return None
    return buffer

  def keep(self, buffer: jax.Array) -> None:
    """Holds `buffer` for the next `take`."""
    self._buffer = buffer

  def clear(self) -> None:
    """Releases the held buffer."""
    self._buffer = None

  @property
  def nbytes(self) -> int:
    """Bytes held (0 if none)."""
    return 0 if self._buffer is None else int(self._buffer.nbytes)


@functools.partial(jax.jit, static_argnames=("block",))
def nearest_medoid(x: jax.Array, medoids: jax.Array, *, block: int) -> tuple[jax.Array, jax.Array]:
  """For each row of x (a multiple of `block` rows): position in `medoids` of its nearest medoid
  (ties: earliest position, i.e. earliest greedy pick) and the distance to it."""
  check_blocks(x.shape[0], block, "nearest_medoid")
  nb = x.shape[0] // block
  sq_m = jnp.sum(medoids * medoids, axis=1)

  def one(a):
    rows = jax.lax.dynamic_slice_in_dim(x, a * block, block)
    dist = distances(rows, jnp.sum(rows * rows, axis=1), medoids, sq_m)
    return jnp.argmin(dist, axis=1), jnp.min(dist, axis=1)

  pos, dist = jax.lax.map(one, jnp.arange(nb))
  return pos.reshape(-1), dist.reshape(-1)


def fl_value(x: np.ndarray, selected: np.ndarray, *, kernel: str = "craig",
             max_d: float | None = None, block: int = 2048) -> float:
  """F(S) = Σ_i max_{j∈S} s_ij over all rows of x, computed blocked (for benchmarks and tests).

  For 'craig' the kernel's M is the max distance over x unless given.
  """
  check_kernel(kernel)
  x = np.asarray(x)
  xc = x - x.mean(axis=0, keepdims=True)
  padded, valid = pad_rows(xc, block)
  if kernel == "craig" and max_d is None:
    max_d = float(max_distance(jnp.asarray(padded), jnp.asarray(valid), block=block))
  _, dist = nearest_medoid(jnp.asarray(padded), jnp.asarray(xc[np.asarray(selected)]), block=block)
  dist = np.asarray(dist, np.float64)[valid]
  sim = max_d - dist if kernel == "craig" else np.exp(-dist / x.shape[1])
  return float(np.sum(sim))
