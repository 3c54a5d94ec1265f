"""Greedy maximisation of weighted facility location F(S) = Σ_i w_i max_{j∈S} s_ij.

All are jitted loops (no host round trip per pick):
  greedy_fl          exact, dense: a precomputed (n, n) similarity and an incremental marginal-
                     gain vector updated only from the rows whose coverage changed;
  lazy_greedy_dense  exact, dense: stale gains as upper bounds (submodularity; the bound vector
                     with group maxima replaces the host heap), a re-evaluation reads one row;
  lazy_greedy        exact, from features: the same lazy loop, distances computed on the fly
                     (O(n d) memory, for classes whose n x n matrix does not fit);
  stochastic_greedy  each pick scans a random sample of ceil(n/k ln(1/eps)) candidates.
Ties go to the lowest index, as with a brute-force argmax, so the exact methods agree. The lazy
loops also record each point's most similar pick, so cluster sizes come without another pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from robustdata.selection.similarity import distances, kernel_from_distances

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_picks(k: int, n: int, where: str, **same_length) -> None:
  """Static checks of a greedy call: 0 <= k <= n and every array of `same_length` has n rows
  (shapes are static under jit, so these raise at trace time with a clear message)."""
  if not 0 <= k <= n:
    raise ValueError(f"{where}: k={k} picks must be in [0, n={n}]")
  for name, a in same_length.items():
    if a is not None and a.shape[0] != n:
      raise ValueError(f"{where}: {name} has {a.shape[0]} rows, expected n={n}")


@functools.partial(jax.jit, static_argnames=("k", "block", "refine"))
def greedy_fl(similarity: jax.Array, k: int, row_weights: jax.Array | None = None, *,
              candidates: jax.Array | None = None, block: int = 256,
              refine: int = 8) -> tuple[jax.Array, jax.Array]:
  """Dense greedy on a precomputed similarity (rows: points, columns: candidates).

  Returns (order[k], gains[k]): picks in greedy order and their marginal gains. After each pick
  only rows whose coverage cur_i rose change the gain vector; those rows are compacted and
  processed `block` at a time, so a step costs O(changed rows * n) instead of O(n^2). The
  `refine` largest incremental gains are recomputed exactly before each argmax.
  `candidates` (bool, n) masks columns that may be picked (default all).
  """
  n = similarity.shape[0]
  if similarity.ndim != 2 or similarity.shape[1] != n:
    raise ValueError(f"greedy_fl: similarity has shape {similarity.shape}, not (n, n)")
  _check_picks(k, n, "greedy_fl", row_weights=row_weights, candidates=candidates)
  if block < 1 or refine < 1:
    raise ValueError(f"greedy_fl: block={block} and refine={refine} must be >= 1")
  dtype = similarity.dtype
  w = jnp.ones(n, dtype) if row_weights is None else row_weights.astype(dtype)
  allowed = jnp.ones(n, bool) if candidates is None else candidates
  gains0 = jnp.matmul(w, jnp.maximum(similarity, 0.0), precision=_HIGHEST)
  sim_pad = jnp.concatenate([similarity, jnp.zeros((block, n), dtype)])

  def step(t, carry):
    gains, cur, chosen, order, picked_gains = carry
    # Incremental gains drift by rounding; re-evaluate the `refine` best exactly (as the lazy
    # greedies do) so near-ties are decided like a brute-force argmax (lowest index).
    _, cols = jax.lax.top_k(jnp.where(chosen | ~allowed, -jnp.inf, gains), min(refine, n))
    exact = jnp.matmul(w, jnp.maximum(similarity[:, cols] - cur[:, None], 0.0), precision=_HIGHEST)
    exact = jnp.where(chosen[cols] | ~allowed[cols], -jnp.inf, exact)
    gains = gains.at[cols].set(exact)
    j = jnp.min(jnp.where(exact == jnp.max(exact), cols, n)).astype(jnp.int32)
    new_cur = jnp.maximum(cur, similarity[:, j])
    changed = new_cur > cur
    count = jnp.sum(changed)
    pos = jnp.where(changed, jnp.cumsum(changed) - 1, n + block)
    rows = jnp.full(n + block, n, jnp.int32)
    rows = rows.at[pos].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    cur_pad = jnp.concatenate([cur, jnp.zeros(block, dtype)])
    new_pad = jnp.concatenate([new_cur, jnp.zeros(block, dtype)])
    w_pad = jnp.concatenate([w, jnp.zeros(block, dtype)])

    def blk(b, delta):
      r = jax.lax.dynamic_slice_in_dim(rows, b * block, block)
      s = sim_pad[r]
      diff = jnp.maximum(s - cur_pad[r][:, None], 0.0) - jnp.maximum(s - new_pad[r][:, None], 0.0)
      return delta + jnp.matmul(w_pad[r], diff, precision=_HIGHEST)

    delta = jax.lax.fori_loop(0, (count + block - 1) // block, blk, jnp.zeros(n, dtype))
    return (gains - delta, new_cur, chosen.at[j].set(True), order.at[t].set(j),
            picked_gains.at[t].set(gains[j]))

  init = (gains0, jnp.zeros(n, dtype), jnp.zeros(n, bool), jnp.zeros(k, jnp.int32),
          jnp.zeros(k, dtype))
  _, _, _, order, picked_gains = jax.lax.fori_loop(0, k, step, init)
  return order, picked_gains


def _lazy_loop(gains0, allowed, k, sim_rows, weights, batch):
  """Shared exact lazy-greedy loop over a two-level bound structure.

  u_j >= true gain (submodularity), exact when re-evaluated during the current pick. Group maxima
  of u over groups of G = 128 make argmax and "top bounds" O(n/G + batch * G) instead of O(n):
  each round re-evaluates the best element of the `batch` groups with the largest maxima (the
  global argmax among them); once argmax(u) (lowest index on ties) is fresh it is the pick.
  `sim_rows(cols)` returns s_{cols, :} as (len(cols), n) (similarity is symmetric).

  Returns (order, gains, evaluations, assign): assign[i] is the position in `order` of the pick
  most similar to point i (the earliest on ties; -1 if no pick has s_ij > 0), recorded as the
  coverage rises, so cluster sizes need no second pass over the data. Any n works: the bounds
  are padded to a multiple of G with -inf entries that are never picked. `k` must not exceed
  the number of allowed points (callers check; see `check_lazy_inputs`).
  """
  n = gains0.shape[0]
  dtype = gains0.dtype
  group = min(128, n)
  ng = -(-n // group)
  pad = ng * group - n
  nq = min(batch, ng)
  rows_of = lambda cols: sim_rows(jnp.minimum(cols, n - 1))  # padded slots read a real row

  def gmax_of(u):
    return jnp.max(u.reshape(ng, group), axis=1)

  def argmax_u(u, gmax):
    gb = jnp.argmax(gmax)
    seg = jax.lax.dynamic_slice_in_dim(u, gb * group, group)
    return (gb * group + jnp.argmax(seg)).astype(jnp.int32)

  def step(t, carry):
    u, gmax, cur, assign, fresh_at, order, picked_gains, evals = carry

    def stale(c):
      _, _, fresh_at, _, j = c
      return fresh_at[j] != t

    def refresh(c):
      u, gmax, fresh_at, evals, _ = c
      _, blocks = jax.lax.top_k(gmax, nq)
      segs = u.reshape(ng, group)[blocks]
      cols = (blocks * group + jnp.argmax(segs, axis=1)).astype(jnp.int32)
      g = jnp.matmul(jnp.maximum(rows_of(cols) - cur[None, :], 0.0), weights, precision=_HIGHEST)
      g = jnp.where(jnp.isneginf(u[cols]), -jnp.inf, g)
      u = u.at[cols].set(g)
      gmax = gmax.at[blocks].set(jnp.max(u.reshape(ng, group)[blocks], axis=1))
      return u, gmax, fresh_at.at[cols].set(t), evals + nq, argmax_u(u, gmax)

    u, gmax, fresh_at, evals, j = jax.lax.while_loop(
        stale, refresh, (u, gmax, fresh_at, evals, argmax_u(u, gmax)))
    gain = u[j]
    row = rows_of(j[None])[0]
    gained = row > cur
    assign = jnp.where(gained, t, assign)
    cur = jnp.where(gained, row, cur)
    u = u.at[j].set(-jnp.inf)
    gb = j // group
    gmax = gmax.at[gb].set(jnp.max(jax.lax.dynamic_slice_in_dim(u, gb * group, group)))
    return (u, gmax, cur, assign, fresh_at, order.at[t].set(j), picked_gains.at[t].set(gain),
            evals)

  u0 = jnp.concatenate([jnp.where(allowed, gains0, -jnp.inf), jnp.full(pad, -jnp.inf, dtype)])
  # gains0 are exact for the empty set, so every bound counts as fresh at t = 0.
  init = (u0, gmax_of(u0), jnp.zeros(n, dtype), jnp.full(n, -1, jnp.int32),
          jnp.zeros(n + pad, jnp.int32), jnp.zeros(k, jnp.int32), jnp.zeros(k, dtype),
          jnp.zeros((), jnp.int32))
  _, _, _, assign, _, order, picked_gains, evals = jax.lax.fori_loop(0, k, step, init)
  return order, picked_gains, evals, assign


@functools.partial(jax.jit, static_argnames=("k", "kernel", "dim", "batch"))
def lazy_greedy(x: jax.Array, row_weights: jax.Array, valid: jax.Array, gains0: jax.Array,
                max_d: jax.Array, k: int, *, kernel: str, dim: int,
                batch: int = 32) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Exact lazy greedy from features (distances on the fly, O(n d) memory), with
  gains0 = initial_gains(...) as the first bounds. Returns (order, gains, evaluations, assign)
  as `_lazy_loop`."""
  _check_picks(k, x.shape[0], "lazy_greedy", row_weights=row_weights, valid=valid, gains0=gains0)
  sq = jnp.sum(x * x, axis=1)

  def sim_rows(cols):
    dist = distances(x[cols], sq[cols], x, sq)
    return kernel_from_distances(dist, kernel, max_d, dim)

  return _lazy_loop(gains0, valid, k, sim_rows, row_weights.astype(x.dtype), batch)


@functools.partial(jax.jit, static_argnames=("k", "kernel", "dim", "sample_size"))
def stochastic_greedy(x: jax.Array, row_weights: jax.Array, valid: jax.Array, max_d: jax.Array,
                      k: int, key: jax.Array, *, kernel: str, dim: int,
                      sample_size: int) -> tuple[jax.Array, jax.Array]:
  """Stochastic greedy (Mirzasoleiman et al. 2015): each pick takes the best of a uniform sample
  of `sample_size` unchosen candidates (the top of uniform scores). Returns (order, gains)."""
  n = x.shape[0]
  _check_picks(k, n, "stochastic_greedy", row_weights=row_weights, valid=valid)
  if not 1 <= sample_size <= n:
    raise ValueError(f"stochastic_greedy: sample_size={sample_size} must be in [1, n={n}]")
  dtype = x.dtype
  sq = jnp.sum(x * x, axis=1)

  def sim_cols(cols):
    return kernel_from_distances(distances(x, sq, x[cols], sq[cols]), kernel, max_d, dim)

  def step(t, carry):
    cur, chosen, order, picked_gains = carry
    scores = jax.random.uniform(jax.random.fold_in(key, t), (n,))
    _, cols = jax.lax.top_k(jnp.where(chosen, -1.0, scores), sample_size)
    g = jnp.matmul(row_weights, jnp.maximum(sim_cols(cols) - cur[:, None], 0.0),
                   precision=_HIGHEST)
    g = jnp.where(chosen[cols], -jnp.inf, g)
    best = jnp.max(g)
    j = jnp.min(jnp.where(g == best, cols, n))
    cur = jnp.maximum(cur, sim_cols(j[None])[:, 0])
    return cur, chosen.at[j].set(True), order.at[t].set(j), picked_gains.at[t].set(best)

  init = (jnp.zeros(n, dtype), ~valid, jnp.zeros(k, jnp.int32), jnp.zeros(k, dtype))
  _, _, order, picked_gains = jax.lax.fori_loop(0, k, step, init)
  return order, picked_gains


@functools.partial(jax.jit, static_argnames=("k", "batch"))
def lazy_greedy_dense(similarity: jax.Array, k: int, row_weights: jax.Array | None = None, *,
                      candidates: jax.Array | None = None, gains0: jax.Array | None = None,
                      batch: int = 8) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Exact lazy greedy on a precomputed symmetric similarity: a re-evaluation reads one
  contiguous row instead of recomputing n distances. `gains0` (the empty set's gains, from
  similarity.similarity_and_gains) saves a pass over the matrix. Returns (order, gains,
  evaluations, assign) as `_lazy_loop`."""
  n = similarity.shape[0]
  if similarity.ndim != 2 or similarity.shape[1] != n:
    raise ValueError(f"lazy_greedy_dense: similarity has shape {similarity.shape}, not (n, n)")
  _check_picks(k, n, "lazy_greedy_dense", row_weights=row_weights, candidates=candidates,
               gains0=gains0)
  w = jnp.ones(n, similarity.dtype) if row_weights is None else row_weights.astype(similarity.dtype)
  allowed = jnp.ones(n, bool) if candidates is None else candidates
  if gains0 is None:
    gains0 = jnp.matmul(jnp.maximum(similarity, 0.0), w, precision=_HIGHEST)
  return _lazy_loop(gains0, allowed, k, lambda cols: similarity[cols], w, batch)
