"""Friendly Noise (Liu, Yang, Mirzasoleiman, NeurIPS 2022): per-example pixel noise made as large
as possible without changing the model's output, a defence against clean-label poisons.

For a batch x in [0, 1] and an eval-mode model f, starting from eps ~ U(-init, init):
  minimise  KL(p0 || q) - mu * mean(eps_c^2),   p0 = log_softmax(f(x)) (fixed),
            eps_c = clip(eps, -zeta, zeta),      q = log_softmax(f(clip(x + eps_c, 0, 1)))
with SGD (Nesterov momentum) for T iterations, the rate x0.1 at each milestone; the stored noise
is clip(eps, -zeta, zeta). At training time it is added before the random noise of
`robustdata.data.noise`. The KL is summed over classes and averaged over the real rows of the
batch; the penalty is averaged over their pixels (so the step a row takes scales with
1 / batch size, as in the reference).

The model enters as `logits_fn(variables, x) -> logits` (eval mode, pixel-space input; a model
that normalises its input does so inside `logits_fn`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.data import noise as noise_lib
from robustdata.registry import ConfigError, field_reader

LOSSES = ("kl", "mse")

# config.friendly fields with the reference defaults. The random component's magnitude is the
# reference code's 8/255 (the paper's text mentions 16/255; the code's value is used).
DEFAULTS = {
    "enabled": True,         # generate friendly noise (False: random noise only)
    "begin_epoch": 0,        # epoch at which the noise is generated and starts being added
    "iterations": 30,        # T, SGD iterations per batch
    "lr": 100.0,
    "momentum": 0.9,
    "nesterov": True,
    "milestones": None,      # None: (T // 2, (T // 4) * 3); () keeps the rate constant
    "mu": 1.0,               # weight of the magnitude term
    "clamp": 16 / 255,       # zeta, bound on |eps| (pixel units)
    "init": 8 / 255,         # eps ~ U(-init, init)
    "loss": "kl",            # 'kl' on log-probabilities or 'mse' on logits
    "batch_size": 128,
    "noise_kind": "bernoulli",  # random component: none, bernoulli, uniform, gaussian
    "noise_eps": 8 / 255,
}

LogitsFn = Callable[[Any, jax.Array], jax.Array]


def _clip(v: jax.Array, lo, hi) -> jax.Array:
  """clip(v, lo, hi) whose gradient is 1 on [lo, hi] (ends included) and 0 outside, as
  torch.clamp's; jnp.clip's gradient is 1/2 at the ends."""
  inside = (v >= lo) & (v <= hi)
  return jnp.where(inside, v, jax.lax.stop_gradient(jnp.clip(v, lo, hi)))


def default_milestones(iterations: int) -> tuple[int, ...]:
  return (iterations // 2, (iterations // 4) * 3)


def init_noise(key: jax.Array, shape: Sequence[int], *, init: float) -> jax.Array:
  """The starting noise U(-init, init); row i is drawn from fold_in(key, i), so a row's start
  does not depend on the batch size (padding leaves real rows unchanged)."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(shape[0]))
  draw = lambda k: jax.random.uniform(k, tuple(shape[1:]), jnp.float32, -init, init)
  return jax.vmap(draw)(keys)


def reference_outputs(logits: jax.Array, *, loss: str = "kl") -> jax.Array:
  """What the noise must preserve: log-probabilities for 'kl', logits for 'mse'."""
  logits = logits.astype(jnp.float32)
  return jax.nn.log_softmax(logits, axis=-1) if loss == "kl" else logits


def divergence(reference: jax.Array, logits: jax.Array, *, loss: str = "kl") -> jax.Array:
  """Per-example KL(p0 || q) (sum over classes) or mean squared logit difference."""
  logits = logits.astype(jnp.float32)
  if loss == "kl":
    log_q = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.exp(reference) * (reference - log_q), axis=-1)
  return jnp.mean(jnp.square(logits - reference), axis=-1)


def friendly_loss(logits_fn: LogitsFn, variables: Any, x: jax.Array, eps: jax.Array,
                  reference: jax.Array, mask: Optional[jax.Array] = None, *, mu: float = 1.0,
                  clamp: float = 16 / 255, loss: str = "kl") -> tuple[jax.Array, jax.Array]:
  """(objective, per-example divergence): mean divergence - mu * mean(eps_c^2) over the rows
  with mask 1 (all rows when mask is None)."""
  b = x.shape[0]
  mask = jnp.ones((b,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  eps_c = _clip(eps, -clamp, clamp)
  div = divergence(reference, logits_fn(variables, _clip(x + eps_c, 0.0, 1.0)), loss=loss)
  n = jnp.maximum(jnp.sum(mask), 1.0)
  pixels = math.prod(x.shape[1:])
  sq = jnp.sum(jnp.square(eps_c).reshape(b, -1), axis=1)
  value = jnp.sum(mask * div) / n - mu * jnp.sum(mask * sq) / (n * pixels)
  return value, div


@functools.partial(jax.jit, static_argnames=("logits_fn", "iterations", "nesterov", "loss",
                                             "milestones"))
def _friendly_noise(logits_fn, variables, x, mask, key, lr, momentum, mu, clamp, init, gamma, *,
                    iterations, nesterov, loss, milestones):
  x = x.astype(jnp.float32)
  reference = jax.lax.stop_gradient(reference_outputs(logits_fn(variables, x), loss=loss))
  objective = lambda e: friendly_loss(logits_fn, variables, x, e, reference, mask, mu=mu,
                                      clamp=clamp, loss=loss)
  value_and_grad = jax.value_and_grad(objective, has_aux=True)

  def body(carry, t):
    eps, velocity = carry
    (value, _), grad = value_and_grad(eps)
    velocity = momentum * velocity + grad
    direction = grad + momentum * velocity if nesterov else velocity
    drops = sum((t >= m).astype(jnp.float32) for m in milestones) if milestones else 0.0
    eps = eps - lr * jnp.power(gamma, drops) * direction
    return (eps, velocity), value

  eps0 = init_noise(key, x.shape, init=init)
  (eps, _), values = jax.lax.scan(body, (eps0, jnp.zeros_like(eps0)), jnp.arange(iterations))
  noise = jnp.clip(eps, -clamp, clamp)
  _, final = objective(noise)
  return noise, {"divergence": final, "loss": values}


def friendly_noise_batch(logits_fn: LogitsFn, variables: Any, x: jax.Array, *, key: jax.Array,
                         mask: Optional[jax.Array] = None, iterations: int = 30,
                         lr: float = 100.0, momentum: float = 0.9, nesterov: bool = True,
                         mu: float = 1.0, clamp: float = 16 / 255, init: float = 8 / 255,
                         loss: str = "kl", milestones: Optional[Sequence[int]] = None,
                         gamma: float = 0.1) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Friendly noise for one NHWC batch in [0, 1].

  Returns (noise, info): noise = clip(eps, -clamp, clamp) with x's shape (float32); info has
  'divergence' (B,), the final per-example KL (or MSE) of that noise, and 'loss' (T,), the
  objective before each step. `mask` (B,) marks real rows (padding rows get noise that is
  meaningless and do not affect the others). Compiled once per batch shape and `logits_fn`.
  `milestones=None` means (T // 2, (T // 4) * 3); the reference code builds that schedule but
  never advances it, so `milestones=()` (a constant rate) reproduces its numbers.
  """
  if loss not in LOSSES:
    raise ConfigError(f"config.friendly.loss={loss!r} is not known; allowed values: "
                      f"{list(LOSSES)}")
  if int(iterations) < 1:
    raise ConfigError(f"config.friendly.iterations={iterations} must be an integer >= 1")
  milestones = default_milestones(int(iterations)) if milestones is None else milestones
  mask = jnp.ones((x.shape[0],), jnp.float32) if mask is None else mask
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  return _friendly_noise(logits_fn, variables, x, mask, key, f32(lr), f32(momentum), f32(mu),
                         f32(clamp), f32(init), f32(gamma), iterations=int(iterations),
                         nesterov=bool(nesterov), loss=loss,
                         milestones=tuple(int(m) for m in milestones))


@dataclasses.dataclass(frozen=True)
class FriendlyNoise:
  """The noise of a whole split and how it was made."""
  noise: np.ndarray        # (N, H, W, C) float32, |noise| <= clamp
  divergence: np.ndarray   # (N,) final KL (or MSE) per example
  wall_time_s: float       # time of this call (loading stored batches included)
  total_time_s: float      # generation time summed over the interrupted and resumed calls
  num_batches: int
  resumed_batches: int     # batches read back from `checkpoint_dir` instead of computed


def _fingerprint(variables: Any, images: np.ndarray, key: jax.Array, settings: dict) -> str:
  """sha256 over the data, the model variables, the key and the settings: a stored partial
  generation is only continued for the same inputs."""
  h = hashlib.sha256()
  h.update(json.dumps({**settings, "shape": list(images.shape), "dtype": str(images.dtype)},
                      sort_keys=True).encode())
  h.update(np.ascontiguousarray(images).tobytes())
  for leaf in jax.tree_util.tree_leaves(variables):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  h.update(np.asarray(key).tobytes())
  return h.hexdigest()[:16]


def _to_host(a: jax.Array) -> np.ndarray:
  if getattr(a, "is_fully_addressable", True):
    return np.asarray(a)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(a, tiled=True))


class _Store:
  """Finished batches on disk: noise.npy and divergence.npy (memmaps) and progress.json, which
  is replaced atomically after a batch's rows are flushed, so a kill at any point loses at most
  the batch in flight."""

  def __init__(self, directory: str, shape: tuple[int, ...], fingerprint: str):
    self.dir = directory
    self.progress_path = os.path.join(directory, "progress.json")
    self.writer = jax.process_index() == 0
    os.makedirs(directory, exist_ok=True)
    progress = None
    if os.path.exists(self.progress_path):
      with open(self.progress_path) as f:
        progress = json.load(f)
      if progress.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{directory} holds friendly noise for other data, model, key or settings "
            f"(fingerprint {progress.get('fingerprint')} != {fingerprint}); use another "
            "directory or delete it")
    self.done = int(progress["batches_done"]) if progress else 0
    self.time_s = float(progress["time_s"]) if progress else 0.0
    self.fingerprint = fingerprint
    mode = "r+" if progress else "w+"
    open_mm = np.lib.format.open_memmap
    if self.writer or progress:
      self.noise = open_mm(os.path.join(directory, "noise.npy"), mode=mode, dtype=np.float32,
                           shape=shape)
      self.div = open_mm(os.path.join(directory, "divergence.npy"), mode=mode,
                         dtype=np.float32, shape=(shape[0],))
    else:  # a non-writing process before the writer created the files
      self.noise = np.zeros(shape, np.float32)
      self.div = np.zeros((shape[0],), np.float32)

  def commit(self, batches_done: int, time_s: float) -> None:
    self.done, self.time_s = batches_done, time_s
    if not self.writer:
      return
    self.noise.flush()
    self.div.flush()
    tmp = self.progress_path + ".tmp"
    with open(tmp, "w") as f:
      json.dump({"fingerprint": self.fingerprint, "batches_done": batches_done,
                 "time_s": time_s}, f)
    os.replace(tmp, self.progress_path)


def generate_friendly_noise(logits_fn: LogitsFn, variables: Any, images: np.ndarray, *,
                            key: jax.Array, batch_size: int = 128, iterations: int = 30,
                            lr: float = 100.0, momentum: float = 0.9, nesterov: bool = True,
                            mu: float = 1.0, clamp: float = 16 / 255, init: float = 8 / 255,
                            loss: str = "kl", milestones: Optional[Sequence[int]] = None,
                            gamma: float = 0.1, mesh: Optional[jax.sharding.Mesh] = None,
                            checkpoint_dir: Optional[str] = None,
                            on_batch: Optional[Callable[[int, int], None]] = None
                            ) -> FriendlyNoise:
  """Friendly noise for every row of `images` (N, H, W, C) in [0, 1], in order.

  Batch b is rows [b * batch_size, (b + 1) * batch_size), the last one padded to the same static
  shape (one compile) and masked, with key fold_in(key, b); with `mesh` the batch is sharded
  over its 'data' axis (batch_size must divide by the mesh size) and the variables replicated.
  With `checkpoint_dir` finished batches are stored there and a restarted call continues after
  the last one, returning bitwise the same noise (the directory must be shared by all hosts).
  `on_batch(b, num_batches)` is called after batch b is stored.
  """
  start_time = time.perf_counter()
  images = np.asarray(images)
  if images.ndim < 2:
    raise ValueError(f"images must have a batch axis and pixel axes, got shape {images.shape}")
  if int(batch_size) < 1:
    raise ConfigError(f"config.friendly.batch_size={batch_size} must be an integer >= 1")
  batch_size = int(batch_size)
  devices = mesh.size if mesh is not None else 1
  if batch_size % devices:
    raise ConfigError(f"config.friendly.batch_size={batch_size} must be a multiple of the "
                      f"number of devices ({devices})")
  milestones = default_milestones(int(iterations)) if milestones is None else milestones
  settings = {"batch_size": batch_size, "iterations": int(iterations), "lr": float(lr),
              "momentum": float(momentum), "nesterov": bool(nesterov), "mu": float(mu),
              "clamp": float(clamp), "init": float(init), "loss": loss,
              "milestones": [int(m) for m in milestones], "gamma": float(gamma)}
  n = len(images)
  num_batches = -(-n // batch_size)
  if checkpoint_dir is not None:
    store = _Store(checkpoint_dir, images.shape,
                   _fingerprint(variables, images, key, settings))
    noise_out, div_out, done, prior_time = store.noise, store.div, store.done, store.time_s
  else:
    store = None
    noise_out = np.zeros(images.shape, np.float32)
    div_out = np.zeros((n,), np.float32)
    done, prior_time = 0, 0.0

  if mesh is not None:
    from robustdata.train import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
    batch_sharding = sharding_lib.batch_sharding(mesh)
    variables = jax.device_put(variables, sharding_lib.replicated(mesh))
  hyper = dict(iterations=iterations, lr=lr, momentum=momentum, nesterov=nesterov, mu=mu,
               clamp=clamp, init=init, loss=loss, milestones=milestones, gamma=gamma)
  compute_start = time.perf_counter()
  for b in range(done, num_batches):
    lo = b * batch_size
    xb = images[lo:lo + batch_size].astype(np.float32)
    real = len(xb)
    mask = (np.arange(batch_size) < real).astype(np.float32)
    if real < batch_size:
      xb = np.concatenate([xb, np.zeros((batch_size - real, *xb.shape[1:]), np.float32)])
    if mesh is not None:
      placed = sharding_lib.put_batch({"x": xb, "mask": mask}, batch_sharding)
      xb, mask = placed["x"], placed["mask"]
    noise, info = friendly_noise_batch(logits_fn, variables, xb, key=jax.random.fold_in(key, b),
                                       mask=mask, **hyper)
    noise_out[lo:lo + real] = _to_host(noise)[:real]
    div_out[lo:lo + real] = _to_host(info["divergence"])[:real]
    if store is not None:
      store.commit(b + 1, prior_time + time.perf_counter() - compute_start)
    if on_batch is not None:
      on_batch(b, num_batches)
  total = prior_time + (time.perf_counter() - compute_start if done < num_batches else 0.0)
  return FriendlyNoise(noise=np.array(noise_out), divergence=np.array(div_out),
                       wall_time_s=time.perf_counter() - start_time, total_time_s=total,
                       num_batches=num_batches, resumed_batches=done)


def validate_friendly(cfg: Any) -> None:
  """Checks a config.friendly section (missing fields take DEFAULTS); raises ConfigError naming
  the field, the value and what is allowed."""
  get = field_reader(cfg, DEFAULTS)

  def fail(field: str, message: str):
    raise ConfigError(f"config.friendly.{field}={get(field)!r} {message}")

  def is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

  def num(field: str) -> float:
    v = get(field)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
      fail(field, "must be a number")
    return float(v)

  if not isinstance(get("enabled"), bool):
    fail("enabled", "must be True or False")
  for field in ("iterations", "batch_size"):
    if not is_int(get(field)) or get(field) < 1:
      fail(field, "must be an integer >= 1")
  if not is_int(get("begin_epoch")) or get("begin_epoch") < 0:
    fail("begin_epoch", "must be an integer >= 0")
  if not num("lr") > 0:
    fail("lr", "must be > 0")
  if not 0.0 <= num("momentum") < 1.0:
    fail("momentum", "must be in [0, 1)")
  if not isinstance(get("nesterov"), bool):
    fail("nesterov", "must be True or False")
  for field in ("mu", "clamp", "init", "noise_eps"):
    if not num(field) >= 0:
      fail(field, "must be >= 0")
  if get("loss") not in LOSSES:
    fail("loss", f"is not known; allowed values: {list(LOSSES)}")
  noise_lib.check_kind(get("noise_kind"))
  milestones = get("milestones")
  if milestones is not None and (not isinstance(milestones, (list, tuple)) or not all(
      is_int(m) and m >= 0 for m in milestones)):
    fail("milestones", "must be None or a sequence of integers >= 0")
