"""Patch triggers for supervised backdoors (Sleeper Agent, Hidden Trigger Backdoor), on NumPy
NHWC images in [0, 1].

A trigger is one fixed (p, p, C) patch pasted over the image (not blended): Sleeper Agent
stamps it at a random location per image, Hidden Trigger Backdoor at (size - p - 5) in both
axes. The patch content is drawn from a seed: `random` (uniform pixels) or `checkerboard`
(random colours on a 2-colour checkerboard, a high-frequency pattern like the reference
images).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from robustdata.registry import ConfigError

SUPERVISED_TRIGGERS = ("random", "checkerboard")


def check_trigger(trigger: str) -> None:
  """ConfigError unless `trigger` is a known supervised trigger name."""
  if trigger not in SUPERVISED_TRIGGERS:
    raise ConfigError(f"config.attack.trigger={trigger!r} is not known; "
                      f"allowed: {list(SUPERVISED_TRIGGERS)}")


def make_trigger(kind: str, patch_size: int, channels: int, *, seed: int) -> np.ndarray:
  """A (patch_size, patch_size, channels) float32 patch in [0, 1] drawn from `seed`."""
  check_trigger(kind)
  if patch_size < 1:
    raise ConfigError(f"config.attack.patch_size={patch_size} must be >= 1")
  rng = np.random.default_rng(seed)
  if kind == "random":
    return rng.uniform(0.0, 1.0, (patch_size, patch_size, channels)).astype(np.float32)
  colours = rng.uniform(0.0, 1.0, (2, channels))
  parity = (np.arange(patch_size)[:, None] + np.arange(patch_size)[None, :]) % 2
  return colours[parity].astype(np.float32)


def random_positions(n: int, image_size: tuple[int, int] | int, patch_size: int, *,
                     rng: Optional[np.random.Generator] = None,
                     seed: Optional[int] = None) -> np.ndarray:
  """(n, 2) int64 top-left (row, col) corners, uniform over every place the patch fits, drawn
  from `rng` or, when it is None, from a generator seeded with `seed`."""
  if rng is None:
    if seed is None:
      raise ValueError("random_positions needs rng or seed")
    rng = np.random.default_rng(seed)
  h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
  if patch_size > min(h, w):
    raise ConfigError(f"config.attack.patch_size={patch_size} exceeds the image size {(h, w)}")
  rows = rng.integers(0, h - patch_size + 1, size=n)
  cols = rng.integers(0, w - patch_size + 1, size=n)
  return np.stack([rows, cols], axis=1).astype(np.int64)


def fixed_position(image_size: int, patch_size: int, *, margin: int = 5) -> tuple[int, int]:
  """Hidden Trigger Backdoor's corner: (size - patch - margin) in both axes."""
  start = image_size - patch_size - margin
  if start < 0:
    raise ConfigError(f"config.attack.patch_size={patch_size} plus the margin {margin} exceeds "
                      f"the image size {image_size}")
  return start, start


def stamp_trigger(images: np.ndarray, trigger: np.ndarray, positions: np.ndarray) -> np.ndarray:
  """Pastes `trigger` (p, q, C) on each image of (N, H, W, C) with its top-left corner at
  positions[i] = (row, col) (an (N, 2) array, or one (2,) corner for all); returns a copy."""
  x = np.array(images, np.float32, copy=True)
  n, h, w, _ = x.shape
  p, q = trigger.shape[:2]
  pos = np.broadcast_to(np.asarray(positions, np.int64), (n, 2))
  if n and (pos.min() < 0 or (pos[:, 0] + p).max() > h or (pos[:, 1] + q).max() > w):
    raise ValueError(f"trigger of size {(p, q)} does not fit at every position in {(h, w)} images")
  rows = pos[:, 0, None] + np.arange(p)[None, :]
  cols = pos[:, 1, None] + np.arange(q)[None, :]
  x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = trigger.astype(np.float32)
  return x
