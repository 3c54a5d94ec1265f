"""Jit-able image augmentations for contrastive training (RoCLIP/SafeCLIP `cross_aug` chain):
random resized crop, horizontal flip, colour jitter (w.p. 0.8), random grayscale (p 0.2) and
Gaussian blur. Images are NHWC float in [0, 1]; every function takes an explicit PRNG key and
one image; `augment_batch` vmaps the chain with one key per image.

The blur kernel is scaled to the canvas (the reference uses 21 px at 224 px).

`CHAINS` names the chains a config can pick (`config.contrastive.aug_chain`):
- 'cross_aug': the reference chain above (RoCLIP/SafeCLIP `--cross_aug`, 224-px web photos);
- 'small': for small synthetic images whose captions name colour, size and position (the 24-px
  captioned_shapes): only the aspect-ratio part of the resized crop (area scale (1, 1), ratio
  (3/4, 4/3), so one side stays whole and 87-100% of the other is kept: a stretch by at most
  1.15 and a shift by at most 3 px along one axis); no flip (it swaps the left / right positions
  the captions name), no colour jitter or grayscale (they change the colours the captions
  name), no blur. Measured on captioned_shapes (RoCLIP without matching epochs, 25 epochs,
  seed 0, 96 poisons per attack; zero-shot, chance 0.167): this chain 0.70 (seed 1: 0.28,
  so it still slows CLIP on some seeds; un-augmented CLIP 0.81); area scale (0.5, 1)
  0.24, the same plus the 3-px blur 0.19; area scale (0.8, 1) was also slow (0.28 after 14
  epochs against 0.49 with this chain). The crops and the blur change the 7- and 11-px objects'
  apparent size and outline more than 25 epochs of CLIP can absorb.
  Over seeds 0-2 at 16 poisons per attack it still costs zero-shot against no chain at all
  (RoCLIP without matching epochs: 0.514 ± 0.183 vs 0.732 ± 0.094): the small CNN is not
  shift-invariant (a 1-px shift drops CLIP's zero-shot on its own training images from 0.77
  to 0.54), so RoCLIP's shapes config uses 'none'; SafeCLIP's unimodal views keep 'small'.
- 'none': the identity (with `augment` on, only the EDA captions change).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # NumPy: no JAX work at import


def _bilinear(image: jnp.ndarray, rows: jnp.ndarray, cols: jnp.ndarray) -> jnp.ndarray:
  """Samples `image` (H, W, C) at fractional (rows, cols) grids (H', W'), edge-clamped."""
  h, w = image.shape[:2]
  r0 = jnp.clip(jnp.floor(rows), 0, h - 1)
  c0 = jnp.clip(jnp.floor(cols), 0, w - 1)
  r1, c1 = jnp.minimum(r0 + 1, h - 1), jnp.minimum(c0 + 1, w - 1)
  fr = jnp.clip(rows - r0, 0, 1)[..., None]
  fc = jnp.clip(cols - c0, 0, 1)[..., None]
  r0, r1, c0, c1 = (a.astype(jnp.int32) for a in (r0, r1, c0, c1))
  top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
  bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
  return top * (1 - fr) + bottom * fr


def random_resized_crop(key: jax.Array, image: jnp.ndarray, *, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jnp.ndarray:
  """Crops a random area fraction in `scale` with aspect ratio in `ratio`, resized back."""
  h, w = image.shape[:2]
  k1, k2, k3, k4 = jax.random.split(key, 4)
  area = jax.random.uniform(k1, (), minval=scale[0], maxval=scale[1]) * h * w
  log_r = jax.random.uniform(k2, (), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_r)
  ch = jnp.clip(jnp.sqrt(area / aspect), 1.0, h)
  cw = jnp.clip(jnp.sqrt(area * aspect), 1.0, w)
  top = jax.random.uniform(k3, ()) * (h - ch)
  left = jax.random.uniform(k4, ()) * (w - cw)
  rows = top + (jnp.arange(h) + 0.5) * ch / h - 0.5
  cols = left + (jnp.arange(w) + 0.5) * cw / w - 0.5
  rr, cc = jnp.meshgrid(rows, cols, indexing="ij")
  return _bilinear(image, rr, cc)


def random_flip(key: jax.Array, image: jnp.ndarray, *, p: float = 0.5) -> jnp.ndarray:
  """Horizontal flip with probability `p`."""
  return jnp.where(jax.random.bernoulli(key, p), image[:, ::-1], image)


def _grayscale(image: jnp.ndarray) -> jnp.ndarray:
  return jnp.broadcast_to((image @ _LUMA)[..., None], image.shape)


def _hue_rotate(image: jnp.ndarray, turns: jnp.ndarray) -> jnp.ndarray:
  """Rotates hue by `turns` of a full circle (rotation in YIQ chroma space)."""
  to_yiq = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  theta = 2 * jnp.pi * turns
  c, s = jnp.cos(theta), jnp.sin(theta)
  rot = jnp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
  m = jnp.linalg.inv(to_yiq) @ rot @ to_yiq
  return image @ m.T


def color_jitter(key: jax.Array, image: jnp.ndarray, *, brightness: float = 0.5,
                 contrast: float = 0.5, saturation: float = 0.5, hue: float = 0.1,
                 p: float = 0.8) -> jnp.ndarray:
  """Brightness, contrast, saturation and hue jitter (fixed order), applied with prob. `p`."""
  kb, kc, ks, kh, kp = jax.random.split(key, 5)
  u = lambda k, a: jax.random.uniform(k, (), minval=1 - a, maxval=1 + a)
  out = jnp.clip(image * u(kb, brightness), 0, 1)
  mean = jnp.mean(out @ _LUMA)
  out = jnp.clip((out - mean) * u(kc, contrast) + mean, 0, 1)
  gray = _grayscale(out)
  out = jnp.clip((out - gray) * u(ks, saturation) + gray, 0, 1)
  out = jnp.clip(_hue_rotate(out, jax.random.uniform(kh, (), minval=-hue, maxval=hue)), 0, 1)
  return jnp.where(jax.random.bernoulli(kp, p), out, image)


def random_grayscale(key: jax.Array, image: jnp.ndarray, *, p: float = 0.2) -> jnp.ndarray:
  """Converts to 3-channel grayscale with probability `p`."""
  return jnp.where(jax.random.bernoulli(key, p), _grayscale(image), image)


def gaussian_blur(key: jax.Array, image: jnp.ndarray, *, kernel_size: int = 3,
                  sigma: tuple[float, float] = (0.1, 2.0)) -> jnp.ndarray:
  """Separable Gaussian blur with sigma ~ U(sigma), reflect padding."""
  s = jax.random.uniform(key, (), minval=sigma[0], maxval=sigma[1])
  r = kernel_size // 2
  x = jnp.arange(-r, r + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (x / s) ** 2)
  k = k / k.sum()
  padded = jnp.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")
  h, w = image.shape[:2]
  rows = sum(k[i] * padded[i:i + h] for i in range(kernel_size))
  return sum(k[i] * rows[:, i:i + w] for i in range(kernel_size))


CHAINS: dict[str, dict] = {
    "cross_aug": dict(flip_p=0.5, crop_scale=(0.08, 1.0), jitter_p=0.8, gray_p=0.2),
    "small": dict(flip_p=0.0, crop_scale=(1.0, 1.0), jitter_p=0.0, gray_p=0.0, blur=False),
    "none": dict(flip_p=0.0, crop_scale=None, jitter_p=0.0, gray_p=0.0, blur=False),
}


def chain(name: str) -> dict:
  """The `augment` keyword arguments of the named chain (see the module docstring)."""
  if name not in CHAINS:
    raise ValueError(f"unknown augmentation chain {name!r}; allowed: {sorted(CHAINS)}")
  return dict(CHAINS[name])


def augment(key: jax.Array, image: jnp.ndarray, *,
            crop_scale: tuple[float, float] | None = (0.08, 1.0), flip_p: float = 0.5,
            jitter_p: float = 0.8, gray_p: float = 0.2, blur: bool = True,
            blur_kernel: int | None = None) -> jnp.ndarray:
  """The RoCLIP chain on one image: flip -> resized crop -> jitter -> grayscale -> blur.

  An op with probability 0 (or `crop_scale=None`, `blur=False`) is skipped; the keys are
  split as for the full chain, so the reference chain's draws do not depend on these options."""
  kf, kc, kj, kg, kb = jax.random.split(key, 5)
  if blur_kernel is None:
    blur_kernel = max(3, 2 * int(round(10 * image.shape[0] / 224)) + 1)
  out = random_flip(kf, image, p=flip_p) if flip_p > 0 else image
  out = random_resized_crop(kc, out, scale=crop_scale) if crop_scale is not None else out
  out = color_jitter(kj, out, p=jitter_p) if jitter_p > 0 else out
  out = random_grayscale(kg, out, p=gray_p) if gray_p > 0 else out
  return gaussian_blur(kb, out, kernel_size=blur_kernel) if blur else out


def augment_batch(key: jax.Array, images: jnp.ndarray, **kwargs) -> jnp.ndarray:
  """`augment` on every image of (B, H, W, C) with independent keys."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment(k, x, **kwargs))(keys, images)
