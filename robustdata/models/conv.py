"""A convolution whose backward pass is fast on XLA:CPU.

`slice_conv_general_dilated` has `lax.conv_general_dilated`'s signature (as `nn.Conv` calls it)
and a custom VJP: the forward pass is XLA's convolution; the input gradient is a *forward*
convolution of the (stride-dilated) cotangent with the spatially flipped, I/O-transposed
kernel; the weight gradient is one dot per filter offset over a strided slice of the padded
input, accumulated over chunks of a few images (a scan) so that each chunk's slices stay in
cache. Per layer alone these dots beat XLA:CPU's weight-gradient convolution where the windows
do not overlap (strided 1x1 projections, patch embeddings) and on wide or large-batch layers,
where XLA's falls off once the activations outgrow the cache; inside the CNN's and ResNet-20's
train steps they are as fast or faster on every layer (the CLIP ConvTower's step at batch 128
is 3% slower), so `cpu_conv_general_dilated` uses them on every call they handle.

`conv_function(name)` maps `config.train.conv` ('auto', 'xla', 'cpu') to the function the
models pass to `nn.Conv(conv_general_dilated=...)`: 'auto' is the CPU implementation when JAX's
default backend is the CPU and XLA's otherwise (GPU and TPU convolutions are XLA's strength).
Parameters and numbers (to float32 rounding) do not depend on the choice.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from robustdata.registry import ConfigError

CONV_CHOICES = ("auto", "xla", "cpu")

ConvFn = Callable[..., jnp.ndarray]


def conv_function(name: str) -> ConvFn:
  """The convolution `config.train.conv=name` selects (resolved now, on the default backend)."""
  if name not in CONV_CHOICES:
    raise ConfigError(f"config.train.conv={name!r} is not known; allowed: {list(CONV_CHOICES)}")
  if name == "auto":
    name = "cpu" if jax.default_backend() == "cpu" else "xla"
  return cpu_conv_general_dilated if name == "cpu" else lax.conv_general_dilated


def conv_choice(config: Any) -> str:
  """`config.train.conv`, 'auto' when unset (the field is in a run's config, and its hash,
  only when a user sets it)."""
  train = config.get("train", None) if config is not None else None
  name = (train.get("conv", None) if train is not None else None) or "auto"  # None: unset
  if name not in CONV_CHOICES:
    raise ConfigError(f"config.train.conv={name!r} is not known; allowed: {list(CONV_CHOICES)}")
  return name


def with_conv(model: Any, config: Any) -> Any:
  """`model` with the convolution `config.train.conv` chooses (a model without a `conv`
  attribute, e.g. the MLP, is returned as is; parameters do not change)."""
  name = conv_choice(config)
  if not hasattr(model, "conv") or model.conv == name:
    return model
  return model.clone(conv=name)


def _channels_last(n: int) -> lax.ConvDimensionNumbers:
  spatial = tuple(range(1, n + 1))
  return lax.ConvDimensionNumbers(lhs_spec=(0, n + 1) + spatial,
                                  rhs_spec=(n + 1, n) + tuple(range(n)),
                                  out_spec=(0, n + 1) + spatial)


def _plan(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count, batch_group_count, preferred_element_type
          ) -> Optional[tuple[tuple[int, ...], tuple[tuple[int, int], ...]]]:
  """(strides, explicit pads) when the call is one the slice VJP handles (channels-last
  NHWC / HWIO, no dilation, no groups, padding within the kernel extent), else None (the call
  goes to lax as is)."""
  n = lhs.ndim - 2
  if n < 1 or rhs.ndim != n + 2 or feature_group_count != 1 or batch_group_count != 1:
    return None
  if preferred_element_type is not None or lhs.dtype != rhs.dtype:
    return None
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return None
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _channels_last(n):
    return None
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:n], strides, padding)
  else:
    pads = padding
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  # Padding beyond the kernel extent would need negative padding in the backward convolution.
  if any(not (0 <= lo < k and 0 <= hi < k) for (lo, hi), k in zip(pads, rhs.shape[:n])):
    return None
  out = [(size + lo + hi - k) // s + 1
         for size, (lo, hi), k, s in zip(lhs.shape[1:-1], pads, rhs.shape[:n], strides)]
  if any(o < 1 for o in out):
    return None
  return strides, pads


def _offset_slices(xp: jnp.ndarray, kernel: Sequence[int], strides: Sequence[int],
                   out: Sequence[int]) -> list[jnp.ndarray]:
  """For each filter offset (row-major), the strided slice [B, *out, C] of the padded input
  `xp` that the offset's kernel tap multiplies."""
  pieces = []
  for offsets in itertools.product(*[range(k) for k in kernel]):
    limit = [o + (m - 1) * s + 1 for o, m, s in zip(offsets, out, strides)]
    pieces.append(lax.slice(xp, (0, *offsets, 0), (xp.shape[0], *limit, xp.shape[-1]),
                            (1, *strides, 1)))
  return pieces


CHUNK_ROWS = 4096  # output positions per weight-gradient chunk (benchmarks/conv.py)


def chunk_images(batch: int, positions: int) -> int:
  """Images per chunk of the weight gradient: the largest divisor of `batch` whose chunk has at
  most CHUNK_ROWS output positions (at least one image)."""
  target = max(1, CHUNK_ROWS // max(positions, 1))
  return max(c for c in range(1, min(batch, target) + 1) if batch % c == 0)


def _chunking(batch: int, positions: int) -> tuple[int, bool]:
  """(images per chunk of the weight gradient's scan, whether the chunks are strided).

  One device (or a batch that does not divide evenly over the devices): `chunk_images`,
  contiguous chunks. Several devices: their count times the chunk of one device's share,
  strided chunks (`_split`), so that every chunk holds that many images of each device."""
  devices = jax.device_count()
  if devices == 1 or batch % devices:
    return chunk_images(batch, positions), False
  return devices * chunk_images(batch // devices, positions), True


def _split(a: jnp.ndarray, chunk: int, strided: bool) -> jnp.ndarray:
  """`a` as [n, chunk, ...]: n chunks of `chunk` along its leading (batch) axis. Contiguous:
  chunk i holds images i*chunk, i*chunk + 1, ...; strided: images i, i + n, i + 2n, ...: a
  batch sharded in contiguous blocks over the devices then stays sharded along the chunk axis,
  and the scan over the chunks needs no gather (contiguous chunks of a sharded batch made XLA
  all-gather every layer's input and cotangent onto every device)."""
  n = a.shape[0] // chunk
  if not strided:
    return jnp.reshape(a, (n, chunk) + a.shape[1:])
  return jnp.swapaxes(jnp.reshape(a, (chunk, n) + a.shape[1:]), 0, 1)


def _weight_grad(x: jnp.ndarray, g: jnp.ndarray, kernel: Sequence[int], strides: Sequence[int],
                 pads: Sequence[tuple[int, int]], precision: Any) -> jnp.ndarray:
  """[taps, C_in, C_out]: one [C_in, C_out] dot per filter offset over its strided slice of the
  padded input, accumulated over chunks of images (`_chunking`, `_split`; a scan), so that
  each chunk's slices and cotangent stay in cache while its dots read them."""
  batch, out = x.shape[0], g.shape[1:-1]
  chunk, strided = _chunking(batch, int(np.prod(out)))
  widths = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]

  def taps(xc, gc):
    xp = lax.pad(xc, jnp.zeros((), xc.dtype), widths)
    g2 = jnp.reshape(gc, (-1, gc.shape[-1]))
    return jnp.stack([jnp.dot(jnp.reshape(xs, (-1, xc.shape[-1])).T, g2, precision=precision)
                      for xs in _offset_slices(xp, kernel, strides, out)])

  if chunk == batch:
    return taps(x, g)
  xs, gs = _split(x, chunk, strided), _split(g, chunk, strided)
  dtype = jnp.promote_types(jnp.result_type(x, g), jnp.float32)
  acc = jnp.zeros((int(np.prod(kernel)), x.shape[-1], g.shape[-1]), dtype)
  acc, _ = lax.scan(lambda a, xg: (a + taps(*xg), None), acc, (xs, gs))
  return acc


@functools.lru_cache(maxsize=None)
def _slice_conv(strides: tuple[int, ...], pads: tuple[tuple[int, int], ...],
                precision: Any) -> Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]:
  """The custom-VJP convolution for one static configuration (channels-last)."""
  n = len(strides)
  dims = _channels_last(n)

  def forward(x, w):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=dims,
                                    precision=precision)

  @jax.custom_vjp
  def conv(x, w):
    return forward(x, w)

  def fwd(x, w):
    return forward(x, w), (x, w)

  def bwd(res, g):
    x, w = res
    kernel, spatial, out = w.shape[:n], x.shape[1:-1], g.shape[1:-1]
    # Input gradient: correlate the stride-dilated cotangent with the flipped kernel whose
    # input and output channels are swapped (HWOI -> HWIO), a forward convolution.
    w_t = jnp.swapaxes(jnp.flip(w, axis=tuple(range(n))), -1, -2)
    back_pads = [(k - 1 - lo, size + lo - (o - 1) * s - 1)
                 for k, (lo, _), size, o, s in zip(kernel, pads, spatial, out, strides)]
    dx = lax.conv_general_dilated(g, w_t, (1,) * n, back_pads, lhs_dilation=strides,
                                  dimension_numbers=dims, precision=precision)
    dw = _weight_grad(x, g, kernel, strides, pads, precision)
    return dx.astype(x.dtype), jnp.reshape(dw, w.shape).astype(w.dtype)

  conv.defvjp(fwd, bwd)
  return conv


def slice_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                               rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                               batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` with the slice VJP on every call it handles (channels-last,
  no dilation, no groups); any other call goes to lax unchanged."""
  plan = _plan(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
               feature_group_count, batch_group_count, preferred_element_type)
  if plan is None:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  return _slice_conv(*plan, precision)(lhs, rhs)


# The convolution of `config.train.conv='cpu'`: the slice VJP on every call it handles (measured
# per layer and per train step in docs/results/speed.md; see the module docstring).
cpu_conv_general_dilated = slice_conv_general_dilated
