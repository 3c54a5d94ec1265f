"""Per-class weighted facility-location coresets (spec §0): budgets, greedy, weights, order.

`facility_location(proxies, labels, budget=B)` splits the pool by class, gives each class a
budget (equal with shortfall redistribution, or proportional), maximises facility location on
the class block with the chosen greedy, weights each medoid by its cluster size and returns the
picks in round-robin order over classes. Callers normalise weights with `normalize_weights`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from robustdata.registry import ConfigError
from robustdata.selection import greedy, similarity

METHODS = ("auto", "numpy", "dense", "lazy_dense", "lazy", "stochastic", "greedi")
# Class blocks of at most this many points take the host NumPy greedy under method='auto':
# below it a jitted call's dispatch and padding cost more than the whole O(k n^2) greedy
# (benchmarks/selection.py; CREST's per-class blocks of ~13 points are ~1 ms in NumPy).
SMALL_MAX = 128
# Bounds re-evaluated per round of the lazy loop. More per round means fewer rounds (each costs
# ~30 us of loop control on XLA:CPU) but more evaluations; a row read from the dense matrix is
# cheap (~6 us), a row of distances on the fly dearer, so the optimum differs (n = 20,000,
# benchmarks/selection.py; WORKSPACE issue 4).
LAZY_BATCH = {"lazy": 32, "lazy_dense": 8}
# Smallest row block `_block_for` trades for less padding: smaller blocks make the block-pair
# loop of `similarity.initial_gains` long and its matmuls small.
MIN_BLOCK = 1024


def class_budgets(counts: np.ndarray, budget: int, *, equal_num: bool = True) -> np.ndarray:
  """Per-class budgets k_c for class sizes `counts` (spec §0 step 1).

  equal_num: ceil(B/C) each; classes smaller than that keep all their points and the shortfall
  is spread (ceil) over the classes that still have room, repeated until no class is over.
  Otherwise proportional: ceil(n_c / n * B). Either way k_c <= n_c and Σ k_c >= min(B, n).
  """
  counts = np.asarray(counts, np.int64)
  if equal_num:
    k = np.full(len(counts), -(-budget // len(counts)), np.int64)
    while np.any(k > counts):
      over = k > counts
      shortfall = int(np.sum(k[over] - counts[over]))
      k[over] = counts[over]
      room = k < counts
      if not np.any(room):
        break
      k[room] += -(-shortfall // int(np.sum(room)))
    return k
  return -(-counts * budget // int(np.sum(counts)))


def normalize_weights(weights: np.ndarray) -> np.ndarray:
  """Scales weights to mean 1 (w <- w |S| / Σ w), as callers do before a weighted loss."""
  weights = np.asarray(weights, np.float64)
  return (weights * (len(weights) / np.sum(weights))).astype(np.float32)


def round_robin(per_class: list[np.ndarray]) -> np.ndarray:
  """Interleaves per-class greedy orders: 1st pick of every class, then 2nd, ... (spec §0 step 5).

  Returns positions into np.concatenate(per_class).
  """
  if not per_class:
    return np.zeros(0, np.int64)
  rank = np.concatenate([np.arange(len(o)) for o in per_class])
  cls = np.concatenate([np.full(len(o), c) for c, o in enumerate(per_class)])
  return np.lexsort((cls, rank)).astype(np.int64)


def _device_arrays(x: np.ndarray, w: np.ndarray, block: int, mesh: Mesh | None):
  """Pads rows to a multiple of `block` and places them (row-sharded on 'data' under a mesh)."""
  padded, valid = similarity.pad_rows(x, block)
  w_pad = np.zeros(len(valid), x.dtype)
  w_pad[: len(w)] = w
  arrays = (padded, w_pad, valid)
  if mesh is None:
    return tuple(jnp.asarray(a) for a in arrays)
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  rows = NamedSharding(mesh, P("data"))
  return (jax.device_put(padded, NamedSharding(mesh, P("data", None))),
          jax.device_put(w_pad, rows), jax.device_put(valid, rows))


def _block_for(n: int, block: int, mesh: Mesh | None) -> int:
  """Row-block size: a power of two (few recompiles), at most `block`, divisible by the mesh.

  Rows are padded to a multiple of it, and the dense work grows with the square of the padded
  size, so of the powers of two down to MIN_BLOCK the one padding least is taken (the larger on
  ties): n = 5,000 pads to 5,120 with 1,024-row blocks instead of 6,144 with 2,048.
  """
  b = min(max(8, 1 << max(0, math.ceil(math.log2(max(n, 1))))), block)
  candidates = [b]
  while candidates[-1] // 2 >= MIN_BLOCK:
    candidates.append(candidates[-1] // 2)
  b = min(candidates, key=lambda c: (-(-n // c) * c, -c))
  if mesh is not None:
    b = max(b, mesh.devices.size)
  return b


def greedy_select(x: np.ndarray, k: int, *, kernel: str = "craig", method: str = "lazy",
                  row_weights: np.ndarray | None = None, block: int = 2048,
                  lazy_batch: int | None = None, epsilon: float = 0.01,
                  key: jax.Array | None = None, mesh: Mesh | None = None) -> np.ndarray:
  """Greedy FL picks (positions into x, greedy order) for one block of features x (n, d).

  method: 'dense' (materialised similarity, incremental gains), 'lazy_dense' (materialised,
  lazy bounds), 'lazy' (exact, distances on the fly, O(n d) memory) or 'stochastic'.
  `row_weights` weight the points covered (GreeDi's second stage); default 1. `lazy_batch`:
  bounds re-evaluated per round of the lazy methods (default LAZY_BATCH[method]).
  """
  return _select(x, k, kernel=kernel, method=method, row_weights=row_weights, block=block,
                 lazy_batch=lazy_batch, epsilon=epsilon, key=key, mesh=mesh)[0]


def _select(x: np.ndarray, k: int, *, kernel: str, method: str,
            row_weights: np.ndarray | None = None, block: int = 2048,
            lazy_batch: int | None = None, epsilon: float = 0.01, key: jax.Array | None = None,
            mesh: Mesh | None = None, workspace: similarity.SimilarityWorkspace | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
  """`greedy_select`, plus the picks' cluster sizes when the greedy recorded them (the lazy
  methods track each point's most similar pick as its coverage rises; see greedy._lazy_loop),
  else None. Sizes are as `cluster_weights` computes them: points per nearest pick, ties to the
  earlier pick, zero sizes become 1 with the 'exp' kernel. The dense methods build their matrix
  in `workspace`'s buffer when it holds one of the padded size, and leave theirs there."""
  n, dim = x.shape
  x = x - x.mean(axis=0, keepdims=True)
  w = np.ones(n, x.dtype) if row_weights is None else np.asarray(row_weights, x.dtype)
  lazy_batch = lazy_batch or LAZY_BATCH.get(method, 1)
  b = _block_for(n, block, mesh)
  xp, wp, valid = _device_arrays(x, w, b, mesh)
  if method in ("dense", "lazy_dense"):
    # The greedy order and the weights do not depend on the CRAIG kernel's M (only F's additive
    # constant does) as long as M >= every distance, and 2 max_i |x_i - mean| is such a bound:
    # this saves a second n^2 pass. F values with the true M come from similarity.fl_value.
    max_d = 2.0 * jnp.max(jnp.where(valid, jnp.linalg.norm(xp, axis=1), 0.0))
    workspace = workspace if mesh is None else None
    out = None if workspace is None else workspace.take((len(valid),) * 2, xp.dtype)
    if method == "dense":
      sim = similarity.similarity_matrix(xp, max_d, kernel=kernel, block=b, dim=dim, out=out)
      order, _ = greedy.greedy_fl(sim, k, wp, candidates=valid, block=min(256, b))
      sizes = None
    else:
      sim, gains0 = similarity.similarity_and_gains(xp, wp, max_d, kernel=kernel, block=b,
                                                    dim=dim, out=out)
      order, _, _, assign = greedy.lazy_greedy_dense(sim, k, wp, candidates=valid,
                                                     gains0=gains0, batch=lazy_batch)
      sizes = _sizes(assign, n, k, kernel)
    if workspace is not None:
      workspace.keep(sim)
    return np.asarray(order, np.int64), sizes
  elif method == "lazy":
    gains0, max_d = similarity.initial_gains(xp, wp, valid, kernel=kernel, block=b, dim=dim)
    order, _, _, assign = greedy.lazy_greedy(xp, wp, valid, gains0, max_d, k, kernel=kernel,
                                             dim=dim, batch=lazy_batch)
    return np.asarray(order, np.int64), _sizes(assign, n, k, kernel)
  elif method == "stochastic":
    max_d = (similarity.max_distance(xp, valid, block=b) if kernel == "craig"
             else jnp.zeros((), xp.dtype))
    sample = min(n, max(1, math.ceil(n / k * math.log(1.0 / epsilon))))
    key = jax.random.key(0) if key is None else key
    order, _ = greedy.stochastic_greedy(xp, wp, valid, max_d, k, key, kernel=kernel, dim=dim,
                                        sample_size=sample)
  else:
    raise ConfigError(f"method={method!r} is not a single-stage greedy; use dense/lazy/stochastic")
  return np.asarray(order, np.int64), None


def _sizes(assign: jax.Array, n: int, k: int, kernel: str) -> np.ndarray | None:
  """Cluster sizes from the greedy's assignment of the n real rows; None if a row was never
  covered (s_ij = 0 to every pick: the CRAIG kernel's farthest pair, or exp underflow), where
  the caller falls back to `cluster_weights` and its distances."""
  assign = np.asarray(assign)[:n]
  if np.any(assign < 0):
    return None
  counts = np.bincount(assign, minlength=k).astype(np.float64)
  if kernel == "exp":
    counts[counts == 0] = 1.0
  return counts


def cluster_weights(x: np.ndarray, selected: np.ndarray, *, kernel: str = "craig",
                    block: int = 2048) -> np.ndarray:
  """Weight of each medoid = number of points whose most similar medoid it is (spec §0 step 4).

  Ties go to the earlier pick. With the 'exp' kernel (submodlib variant) zero weights become 1.
  """
  x = x - x.mean(axis=0, keepdims=True)
  b = _block_for(len(x), block, None)
  padded, valid = similarity.pad_rows(x, b)
  pos, _ = similarity.nearest_medoid(jnp.asarray(padded), jnp.asarray(x[selected]), block=b)
  counts = np.bincount(np.asarray(pos)[valid], minlength=len(selected)).astype(np.float64)
  if kernel == "exp":
    counts[counts == 0] = 1.0
  return counts


def numpy_select(x: np.ndarray, k: int, *, kernel: str = "craig") -> tuple[np.ndarray, np.ndarray]:
  """Exact greedy FL picks and cluster-size weights for a small block x (n, d), on the host.

  The same result as greedy_select(method='lazy' / 'dense') followed by cluster_weights, without
  a jitted dispatch per call: a dense float64 similarity, every gain recomputed each pick (the
  textbook greedy), ties to the lowest index; weights = members whose nearest medoid each pick
  is (ties: earlier pick; zero weights become 1 with the 'exp' kernel). O(k n^2) time, O(n^2)
  memory, so meant for n <= SMALL_MAX. Returns (positions into x in greedy order, weights).
  """
  return numpy_select_many([x], [k], kernel=kernel)[0]


def numpy_select_many(blocks: list[np.ndarray], ks: list[int], *,
                      kernel: str = "craig") -> list[tuple[np.ndarray, np.ndarray]]:
  """`numpy_select` on many small blocks at once: one vectorised greedy over all of them.

  CREST builds P coresets of C class blocks each (~250 blocks of ~26 points per selection);
  one greedy pass over the padded stack replaces P*C Python-level greedy loops. Padding rows
  cover nothing (similarity 0, so they add exact zeros after the real rows of every column sum)
  and padding columns are never candidates, so every block's picks and weights are bitwise
  those of `numpy_select` on that block alone.
  """
  sizes = [len(b) for b in blocks]
  nmax = max(sizes, default=0)
  num = len(blocks)
  sim = np.zeros((num, nmax, nmax))
  dists = []
  for i, x in enumerate(blocks):
    x = np.asarray(x, np.float64)
    n, dim = x.shape
    x = x - x.mean(axis=0, keepdims=True)
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(dist, 0.0)
    # CRAIG's M only shifts F by a constant while M >= every distance (see greedy_select).
    sim[i, :n, :n] = dist.max() - dist if kernel == "craig" else np.exp(-dist / dim)
    dists.append(dist)
  ks = np.asarray(ks, np.int64)
  kmax = int(ks.max(initial=0))
  rows = np.arange(num)
  cur = np.zeros((num, nmax))
  chosen = np.arange(nmax)[None, :] >= np.asarray(sizes)[:, None]  # padding: never a candidate
  order = np.zeros((num, kmax), np.int64)
  buf = np.empty_like(sim)
  for t in range(kmax):
    np.subtract(sim, cur[:, :, None], out=buf)
    gains = np.maximum(buf, 0.0, out=buf).sum(axis=1)
    gains[chosen] = -np.inf
    j = np.argmax(gains, axis=1)
    active = t < ks  # blocks that still pick
    order[:, t] = j
    chosen[rows[active], j[active]] = True
    cur[active] = np.maximum(cur[active], sim[rows[active], :, j[active]])
  out = []
  for i, dist in enumerate(dists):
    picks = order[i, :ks[i]]
    counts = np.bincount(np.argmin(dist[:, picks], axis=1) if len(picks) else
                         np.zeros(0, np.int64), minlength=len(picks)).astype(np.float64)
    if kernel == "exp":
      counts[counts == 0] = 1.0
    out.append((picks, counts))
  return out


def _greedi(x: np.ndarray, k: int, *, kernel: str, parts: int, part_fraction: float,
            rng: np.random.Generator, **kw) -> np.ndarray:
  """GreeDi (Mirzasoleiman et al. 2013): greedy on random parts, then weighted greedy on the
  union of their picks, each weighted by its stage-1 cluster size."""
  n = len(x)
  pieces = [p for p in np.array_split(rng.permutation(n), parts) if len(p)]
  k1 = max(math.ceil(part_fraction * k), math.ceil(k / len(pieces)))
  union, union_w = [], []
  for piece in pieces:
    kp = min(k1, len(piece))
    local, sizes = _select(x[piece], kp, kernel=kernel, method="lazy", **kw)
    union.append(piece[local])
    union_w.append(cluster_weights(x[piece], local, kernel=kernel) if sizes is None else sizes)
  union, union_w = np.concatenate(union), np.concatenate(union_w)
  local = greedy_select(x[union], k, kernel=kernel, method="lazy", row_weights=union_w, **kw)
  return union[local]


def _auto_method(n: int, dim: int, dense_max: int, small_max: int = SMALL_MAX) -> str:
  """Fastest exact method measured on CPU (benchmarks/selection.py): the host NumPy greedy for
  small blocks (n <= small_max, no dispatch overhead); a materialised similarity (lazy_dense)
  for wide proxies (d >= 32) while it fits (n <= dense_max); otherwise distances on the fly
  (lazy), O(n d) memory, which is also faster for narrow proxies at every n measured."""
  if n <= small_max:
    return "numpy"
  return "lazy_dense" if n <= dense_max and dim >= 32 else "lazy"


def _class_plan(proxies: np.ndarray, labels: np.ndarray, budget: int, *, equal_num: bool,
                num_classes: int | None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
  """Validated proxies in the compute dtype, the members of every class and their budgets."""
  proxies = np.asarray(proxies)
  labels = np.asarray(labels)
  if proxies.ndim != 2 or labels.shape != (proxies.shape[0],):
    raise ConfigError(f"proxies must be (n, d) and labels (n,); got {proxies.shape}, "
                      f"{labels.shape}")
  n = proxies.shape[0]
  if not isinstance(budget, (int, np.integer)) or not 0 < budget <= n:
    raise ConfigError(f"budget={budget!r} must be an integer in [1, {n}] (the pool size)")
  if not np.all(np.isfinite(proxies)):
    raise ConfigError("proxies contain NaN or inf values; selection needs finite proxies")
  x64 = jax.dtypes.canonicalize_dtype(np.float64) == np.float64
  dtype = np.float64 if proxies.dtype == np.float64 and x64 else np.float32
  x = proxies.astype(dtype)
  classes = np.unique(labels) if num_classes is None else np.arange(num_classes)
  members = [np.flatnonzero(labels == c) for c in classes]
  counts = np.array([len(m) for m in members])
  budgets = class_budgets(counts, int(budget), equal_num=equal_num)
  if equal_num and np.any(counts == 0):
    raise ConfigError(f"labels: class {classes[np.argmin(counts)]} has no examples but equal_num "
                      f"requests a budget for every one of num_classes={num_classes} classes")
  return x, members, budgets


def facility_location(proxies: np.ndarray, labels: np.ndarray, *, budget: int,
                      kernel: str = "craig", equal_num: bool = True, method: str = "auto",
                      num_classes: int | None = None, dense_max: int = 20_000,
                      small_max: int = SMALL_MAX,
                      block: int = 2048, lazy_batch: int | None = None, epsilon: float = 0.01,
                      greedi_parts: int = 5, greedi_fraction: float = 0.5, seed: int = 0,
                      mesh: Mesh | None = None,
                      workspace: similarity.SimilarityWorkspace | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Per-class weighted FL coreset of `budget` points from gradient proxies (spec §0).

  Returns (indices into proxies in round-robin class order, raw cluster-size weights).
  kernel: 'craig' (M - d) or 'exp' (exp(-d/D)). method: exact 'dense' (incremental gains on a
  materialised similarity; for accelerators), 'lazy_dense' (lazy bounds, materialised) or 'lazy'
  (lazy bounds, distances on the fly); 'numpy' (host float64 greedy, `numpy_select`, for small
  blocks); approximate 'stochastic' (sampled candidates) or 'greedi' (two-stage split, for very
  large pools); 'auto' picks numpy (n <= small_max, unless a mesh is given), lazy_dense or lazy
  per class (`_auto_method`; dense_max caps the n x n matrix, 20k x 20k float32 = 1.6 GB).
  float64 proxies run in float64 when x64 is on. `workspace` (a `SimilarityWorkspace`) lets
  repeated selections reuse one n x n buffer for the dense methods instead of fresh memory.
  """
  similarity.check_kernel(kernel)
  if method not in METHODS:
    raise ConfigError(f"method={method!r} is not known; allowed values: {list(METHODS)}")
  x, members, budgets = _class_plan(proxies, labels, budget, equal_num=equal_num,
                                    num_classes=num_classes)
  rng = np.random.default_rng(seed)
  kw = dict(block=block, lazy_batch=lazy_batch, epsilon=epsilon, mesh=mesh)
  orders, weights = [], []
  for c, (idx, kc) in enumerate(zip(members, budgets)):
    if kc == 0:
      orders.append(np.zeros(0, np.int64))
      weights.append(np.zeros(0))
      continue
    xc = x[idx]
    m = method if method != "auto" else _auto_method(
        len(idx), x.shape[1], dense_max, small_max if mesh is None else 0)
    if m == "numpy":
      local, w = numpy_select(xc, int(kc), kernel=kernel)
      orders.append(idx[local])
      weights.append(w)
      continue
    sizes = None
    if m == "greedi":
      local = _greedi(xc, int(kc), kernel=kernel, parts=greedi_parts,
                      part_fraction=greedi_fraction, rng=rng, **kw)
    else:
      key = jax.random.fold_in(jax.random.key(seed), c)
      local, sizes = _select(xc, int(kc), kernel=kernel, method=m, key=key,
                             workspace=workspace, **kw)
    orders.append(idx[local])
    weights.append(cluster_weights(xc, local, kernel=kernel, block=block) if sizes is None
                   else sizes)
  rr = round_robin(orders)
  return np.concatenate(orders)[rr], np.concatenate(weights)[rr]


def facility_location_many(proxies: list[np.ndarray], labels: list[np.ndarray], *, budget: int,
                           kernel: str = "craig", equal_num: bool = True, method: str = "auto",
                           num_classes: int | None = None, small_max: int = SMALL_MAX,
                           seeds: list[int] | None = None,
                           **kwargs) -> list[tuple[np.ndarray, np.ndarray]]:
  """`facility_location` on each of many pools (CREST's P random subsets), same results.

  Under method='auto' with every class block of every pool at most `small_max` points, all the
  blocks go through one `numpy_select_many` call instead of P*C host greedy loops; otherwise
  (large blocks, another method, a mesh in kwargs) each pool takes `facility_location`.
  """
  seeds = [0] * len(proxies) if seeds is None else list(seeds)
  if len(labels) != len(proxies) or len(seeds) != len(proxies):
    raise ValueError(f"{len(proxies)} pools but {len(labels)} label arrays and {len(seeds)} seeds")
  similarity.check_kernel(kernel)
  if method not in METHODS:
    raise ConfigError(f"method={method!r} is not known; allowed values: {list(METHODS)}")
  plans = [_class_plan(p, y, budget, equal_num=equal_num, num_classes=num_classes)
           for p, y in zip(proxies, labels)]
  small = all(len(idx) <= small_max for _, members, _ in plans for idx in members)
  if method != "auto" or not small or kwargs.get("mesh") is not None:
    return [facility_location(p, y, budget=budget, kernel=kernel, equal_num=equal_num,
                              method=method, num_classes=num_classes, small_max=small_max,
                              seed=seed, **kwargs)
            for p, y, seed in zip(proxies, labels, seeds)]
  blocks, ks = [], []
  for x, members, budgets in plans:
    for idx, kc in zip(members, budgets):
      if kc > 0:
        blocks.append(x[idx])
        ks.append(int(kc))
  picked = iter(numpy_select_many(blocks, ks, kernel=kernel))
  out = []
  for _, members, budgets in plans:
    orders, weights = [], []
    for idx, kc in zip(members, budgets):
      local, w = next(picked) if kc > 0 else (np.zeros(0, np.int64), np.zeros(0))
      orders.append(idx[local])
      weights.append(w)
    rr = round_robin(orders)
    out.append((np.concatenate(orders)[rr], np.concatenate(weights)[rr]))
  return out
