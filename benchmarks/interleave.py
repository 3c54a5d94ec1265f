"""The benchmarks' timer: interleaved rounds in a fresh random order, each visit warmed.

Each round visits every timed function once, in a fresh random order, so load from other
processes and a function's place in the round hit every function alike; the median over rounds
is reported. A visit makes `warm` untimed calls before its timed ones: on the 2-core VM the
first call after the CPU idled or ran other work is up to 3x slower (JAX and PyTorch alike), so
a visit timed from its first call charges each function for the previous one's turn
(docs/results/speed.md).

Imported by the scripts of benchmarks/ as `import interleave` (a script's folder is on
sys.path).
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np


def _timed(fn: Callable[[], object], iters: int) -> float:
  """Seconds per call of `fn` over `iters` back-to-back calls (only the last result is waited
  for, so dispatch overlaps)."""
  start = time.perf_counter()
  out = None
  for _ in range(iters):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / iters


def time_calls(fn: Callable[[], object], iters: int) -> float:
  """Seconds per call of `fn` (returning a value to block on) over `iters` back-to-back calls
  after one untimed call."""
  jax.block_until_ready(fn())
  return _timed(fn, iters)


def time_interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, iters: int = 1,
                     warm: int = 1, seed: int = 0) -> dict[str, float]:
  """Median seconds per call of each no-argument function (returning a value to block on, or
  None) over `rounds` rounds; a visit makes `warm` untimed calls, then times `iters` calls."""
  if rounds < 1 or iters < 1 or warm < 0:
    raise ValueError(f"rounds={rounds}, iters={iters}, warm={warm}: need rounds >= 1, "
                     "iters >= 1, warm >= 0")
  times: dict[str, list[float]] = {name: [] for name in fns}
  rng = np.random.default_rng(seed)
  names = list(fns)
  for _ in range(rounds):
    for i in rng.permutation(len(names)):
      fn = fns[names[i]]
      for _ in range(warm):
        jax.block_until_ready(fn())
      times[names[i]].append(_timed(fn, iters))
  return {name: float(np.median(t)) for name, t in times.items()}
