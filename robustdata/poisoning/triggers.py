"""Backdoor triggers for image-caption poisoning (CleanCLIP `apply_trigger`, spec §4), on
NumPy NHWC images in [0, 1] with a seeded `numpy.random.Generator`.

- `badnet` (CleanCLIP `random`): a square patch = per-channel image mean + N(0, 1) noise,
  re-sampled for every image, at a random location (or the bottom-right corner); clipped.
- `blended`: x <- (1 - a)·x + a·U(0, 1) noise, fresh noise per image (a = 0.2).
- `sig`: x <- (1 - a)·x + a·(amp · sin(2π·f·col / W)), amp = 60/255, f = 6; clipped.
- `warped` (WaNet): a fixed smooth random warp (k×k control grid, upsampled, strength s)
  from `warp_seed`, applied by bilinear sampling; the same warp for every image.
Patch size and warp grid scale with the canvas (the reference uses 16 px at 224 px).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from robustdata.registry import ConfigError

TRIGGERS = ("badnet", "blended", "sig", "warped")


def check_trigger(trigger: str) -> None:
  """ConfigError unless `trigger` is a known trigger name."""
  if trigger not in TRIGGERS:
    raise ConfigError(f"config.poison.trigger={trigger!r} is not known; allowed: {list(TRIGGERS)}")


def default_patch_size(image_size: int) -> int:
  """The reference 16 px at 224 px, scaled, at least 3 px."""
  return max(3, int(round(16 * image_size / 224)))


def _upsample_bilinear(grid: np.ndarray, h: int, w: int) -> np.ndarray:
  """(k, k, C) -> (h, w, C) bilinear with aligned corners."""
  k0, k1 = grid.shape[:2]
  r = np.linspace(0, k0 - 1, h)
  c = np.linspace(0, k1 - 1, w)
  r0 = np.minimum(np.floor(r).astype(int), k0 - 2)
  c0 = np.minimum(np.floor(c).astype(int), k1 - 2)
  fr = (r - r0)[:, None, None]
  fc = (c - c0)[None, :, None]
  g = lambda a, b: grid[(r0 + a)[:, None], (c0 + b)[None, :]]
  return (g(0, 0) * (1 - fr) * (1 - fc) + g(0, 1) * (1 - fr) * fc
          + g(1, 0) * fr * (1 - fc) + g(1, 1) * fr * fc)


def make_warp_grid(image_size: int, *, seed: int, k: int = 4, strength: float = 1.0) -> np.ndarray:
  """WaNet's fixed sampling grid as (H, W, 2) source pixel coordinates (row, col)."""
  rng = np.random.default_rng(seed)
  noise = rng.uniform(-1, 1, size=(k, k, 2))
  noise = noise / np.mean(np.abs(noise))
  flow = _upsample_bilinear(noise, image_size, image_size)
  # WaNet: grid = identity + s·flow/H in [-1, 1] units, i.e. s·flow/2 pixels.
  rows, cols = np.meshgrid(np.arange(image_size), np.arange(image_size), indexing="ij")
  shift = strength * flow * (image_size - 1) / image_size / 2
  src = np.stack([rows, cols], -1) + shift
  return np.clip(src, 0, image_size - 1)


def warp_images(images: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Bilinear sampling of every image (N, H, W, C) at `grid` (H, W, 2)."""
  h, w = images.shape[1:3]
  r, c = grid[..., 0], grid[..., 1]
  r0 = np.minimum(np.floor(r).astype(int), h - 2)
  c0 = np.minimum(np.floor(c).astype(int), w - 2)
  fr, fc = (r - r0)[..., None], (c - c0)[..., None]
  g = lambda a, b: images[:, r0 + a, c0 + b]
  return (g(0, 0) * (1 - fr) * (1 - fc) + g(0, 1) * (1 - fr) * fc
          + g(1, 0) * fr * (1 - fc) + g(1, 1) * fr * fc).astype(images.dtype)


def apply_trigger(images: np.ndarray, *, trigger: str, rng: np.random.Generator,
                  patch_size: Optional[int] = None, location: str = "random",
                  blend_alpha: float = 0.2, sig_amplitude: float = 60 / 255,
                  sig_frequency: float = 6.0, warp_seed: int = 0, warp_k: int = 4,
                  warp_strength: float = 1.0) -> np.ndarray:
  """Stamps `trigger` on every image of (N, H, W, C); returns a new float32 array in [0, 1]."""
  check_trigger(trigger)
  x = np.asarray(images, np.float32).copy()
  n, h, w, c = x.shape
  if trigger == "badnet":
    p = patch_size or default_patch_size(h)
    if location not in ("random", "corner"):
      raise ConfigError(f"config.poison.location={location!r} is not known; allowed: random, corner")
    for i in range(n):
      mean = x[i].mean(axis=(0, 1))
      patch = mean + rng.standard_normal((p, p, c)).astype(np.float32)
      if location == "random":
        r0, c0 = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
      else:
        r0, c0 = h - p, w - p
      x[i, r0:r0 + p, c0:c0 + p] = patch
  elif trigger == "blended":
    x = (1 - blend_alpha) * x + blend_alpha * rng.uniform(0, 1, size=x.shape).astype(np.float32)
  elif trigger == "sig":
    pattern = sig_amplitude * np.sin(2 * np.pi * sig_frequency * np.arange(w) / w)
    x = (1 - blend_alpha) * x + blend_alpha * pattern[None, None, :, None].astype(np.float32)
  else:
    x = warp_images(x, make_warp_grid(h, seed=warp_seed, k=warp_k, strength=warp_strength))
  return np.clip(x, 0.0, 1.0).astype(np.float32)
