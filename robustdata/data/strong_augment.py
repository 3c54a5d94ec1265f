"""A jit-able RandAugment-style strong augmentation on NHWC batches in [0, 1].

Each image gets `num_ops` ops drawn uniformly from `OPS`, each at strength `magnitude` in
[0, 1] with a random sign where the op has one. Per-example randomness comes from one key, so
the same key gives the same images (what a resumable coreset augmentation needs). Geometric ops
use bilinear sampling with zero fill; colour ops act per image and clip to [0, 1].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y", "brightness",
       "contrast", "sharpness", "solarize", "posterize", "autocontrast", "cutout")
MAX_ROTATE_DEG = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3   # fraction of the image size
MAX_ENHANCE = 0.9     # brightness / contrast / sharpness factor 1 ± 0.9 m
MAX_CUTOUT = 0.5      # side of the hole as a fraction of the image size


def _affine(img: jnp.ndarray, matrix: jnp.ndarray, offset: jnp.ndarray) -> jnp.ndarray:
  """out[p] = img[matrix @ (p - centre) + centre + offset] (bilinear, zero outside)."""
  h, w, _ = img.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  centre = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0])
  coords = jnp.stack([ys - centre[0], xs - centre[1]])
  src = jnp.einsum("ij,jhw->ihw", matrix, coords) + (centre + offset)[:, None, None]
  sample = lambda ch: ndimage.map_coordinates(ch, [src[0], src[1]], order=1, mode="constant",
                                              cval=0.0)
  return jnp.moveaxis(jax.vmap(sample, in_axes=-1)(img), 0, -1)


def _blur(img: jnp.ndarray) -> jnp.ndarray:
  """PIL's SMOOTH-like 3x3 filter (centre 5, others 1, /13), edges replicated."""
  padded = jnp.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
  h, w, _ = img.shape
  total = sum(padded[i:i + h, j:j + w] for i in range(3) for j in range(3))
  return (total + 4.0 * img) / 13.0


def _apply_op(op: jnp.ndarray, img: jnp.ndarray, mag: jnp.ndarray, sign: jnp.ndarray,
              key: jax.Array) -> jnp.ndarray:
  """Op number `op` (index into OPS) on one image at magnitude `mag` with sign ±1."""
  h, w, _ = img.shape
  eye = jnp.eye(2)
  zero = jnp.zeros(2)
  signed = sign * mag

  def rotate(x):
    a = jnp.deg2rad(signed * MAX_ROTATE_DEG)
    rot = jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]])
    return _affine(x, rot, zero)

  def shear_x(x):
    return _affine(x, eye.at[1, 0].set(signed * MAX_SHEAR), zero)

  def shear_y(x):
    return _affine(x, eye.at[0, 1].set(signed * MAX_SHEAR), zero)

  def translate_x(x):
    return _affine(x, eye, jnp.array([0.0, signed * MAX_TRANSLATE * w]))

  def translate_y(x):
    return _affine(x, eye, jnp.array([signed * MAX_TRANSLATE * h, 0.0]))

  def brightness(x):
    return x * (1.0 + signed * MAX_ENHANCE)

  def contrast(x):
    mean = jnp.mean(x)
    return mean + (x - mean) * (1.0 + signed * MAX_ENHANCE)

  def sharpness(x):
    blurred = _blur(x)
    return blurred + (x - blurred) * (1.0 + signed * MAX_ENHANCE)

  def solarize(x):
    threshold = 1.0 - mag
    return jnp.where(x >= threshold, 1.0 - x, x)

  def posterize(x):
    levels = 2.0 ** (8.0 - jnp.round(4.0 * mag))
    return jnp.floor(x * (levels - 1.0) + 0.5) / (levels - 1.0)

  def autocontrast(x):
    lo = jnp.min(x, axis=(0, 1), keepdims=True)
    hi = jnp.max(x, axis=(0, 1), keepdims=True)
    return jnp.where(hi > lo, (x - lo) / jnp.maximum(hi - lo, 1e-6), x)

  def cutout(x):
    side = jnp.round(mag * MAX_CUTOUT * min(h, w))
    cy, cx = jax.random.uniform(key, (2,)) * jnp.array([h, w])
    ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    hole = (jnp.abs(ys - cy) < side / 2.0) & (jnp.abs(xs - cx) < side / 2.0)
    return jnp.where(hole[:, :, None], 0.0, x)

  branches = [lambda x: x, rotate, shear_x, shear_y, translate_x, translate_y, brightness,
              contrast, sharpness, solarize, posterize, autocontrast, cutout]
  return jnp.clip(jax.lax.switch(op, branches, img), 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("num_ops",))
def rand_augment(key: jax.Array, images: jnp.ndarray, *, num_ops: int = 2,
                 magnitude: float = 0.5) -> jnp.ndarray:
  """RandAugment on a batch: `num_ops` uniformly drawn ops per image at strength `magnitude`."""
  keys = jax.random.split(key, images.shape[0])

  def one(k, img):
    k_ops, k_sign, k_cut = jax.random.split(k, 3)
    ops = jax.random.randint(k_ops, (num_ops,), 0, len(OPS))
    signs = jnp.where(jax.random.bernoulli(k_sign, 0.5, (num_ops,)), 1.0, -1.0)
    for i in range(num_ops):
      img = _apply_op(ops[i], img, jnp.float32(magnitude), signs[i],
                      jax.random.fold_in(k_cut, i))
    return img

  return jax.vmap(one)(keys, images.astype(jnp.float32))


def apply_op(name: str, images: jnp.ndarray, *, magnitude: float, sign: float = 1.0,
             key: jax.Array | None = None) -> jnp.ndarray:
  """One named op on every image of a batch (for tests and inspection)."""
  key = jax.random.PRNGKey(0) if key is None else key
  return _apply_batch(jnp.int32(OPS.index(name)), images.astype(jnp.float32),
                      jnp.float32(magnitude), jnp.float32(sign), key)


@jax.jit
def _apply_batch(op, images, magnitude, sign, key):
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: _apply_op(op, x, magnitude, sign, k))(keys, images)
