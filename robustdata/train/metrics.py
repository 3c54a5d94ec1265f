"""Metric writers (JSON lines + TensorBoard) and the progress display."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Optional

import numpy as np


def _jsonable(v: Any) -> Any:
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, (np.floating, float)):
    v = float(v)
    return v if math.isfinite(v) else str(v)
  if isinstance(v, (np.integer,)):
    return int(v)
  if isinstance(v, np.ndarray):
    return _jsonable(v.tolist())
  return v


class MetricsWriter:
  """Appends records to `metrics.jsonl` and scalars to TensorBoard event files."""

  def __init__(self, run_dir: str, *, resume_step: int = 0, tensorboard: bool = True):
    self.path = os.path.join(run_dir, "metrics.jsonl")
    # A resumed run drops records written after its checkpoint, so no step appears twice.
    if os.path.exists(self.path):
      with open(self.path) as f:
        keep = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(keep)
    self._file = open(self.path, "a")
    self._tb = None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"), purge_step=resume_step + 1)
      except ImportError:
        self._tb = None

  def write(self, step: int, split: str, metrics: dict[str, Any], **extra: Any) -> None:
    record = {"step": int(step), "split": split, **_jsonable(extra), **_jsonable(metrics)}
    self._file.write(json.dumps(record, sort_keys=True) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        if isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v)):
          self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


class Progress:
  """A tqdm bar (step, loss, throughput, ETA) on a terminal; plain log lines otherwise."""

  def __init__(self, *, total_steps: int, initial: int, mode: str = "auto"):
    if mode == "auto":
      mode = "bar" if sys.stderr.isatty() else "log"
    self.mode, self.total = mode, total_steps
    self._bar = None
    self._t0, self._s0 = time.time(), initial
    if mode == "bar":
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total_steps, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, metrics: dict[str, float], examples_per_sec: float) -> None:
    if self.mode == "bar":
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}",
                            ex_s=f"{examples_per_sec:.0f}")
    elif self.mode == "log":
      elapsed = time.time() - self._t0
      rate = (step - self._s0) / max(elapsed, 1e-9)
      eta = (self.total - step) / rate if rate > 0 else float("inf")
      print(f"step {step}/{self.total} loss={metrics.get('loss', float('nan')):.4f} "
            f"acc={metrics.get('accuracy', float('nan')):.4f} {rate:.1f} steps/s "
            f"{examples_per_sec:.0f} ex/s eta {eta:.0f}s", flush=True)

  def message(self, text: str) -> None:
    if self.mode == "bar":
      self._bar.write(text)
    elif self.mode == "log":
      print(text, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class Timer:
  """Wall time of a run, accumulated across resumes through the checkpoint."""

  def __init__(self, already: float = 0.0):
    self._start, self._already = time.time(), already

  def total(self) -> float:
    return self._already + time.time() - self._start


class MetricsWindow:
  """The step metrics of the current logging window.

  Values stay on the device until fetched; `state()` goes into the checkpoint so a resumed run
  averages (and logs) exactly the window an uninterrupted run does. Fetched values are Python
  floats (float64), so a window that crossed a checkpoint's JSON averages identically.
  """

  def __init__(self, restored: Optional[list] = None):
    self.items: list = list(restored or [])

  def append(self, step_metrics: dict) -> None:
    self.items.append(step_metrics)

  def __len__(self) -> int:
    return len(self.items)

  def fetch(self) -> Optional[float]:
    """Brings the window to the host; returns the first non-finite loss, if any."""
    import jax  # pylint: disable=g-import-not-at-top
    self.items = [{k: float(v) for k, v in m.items() if np.ndim(v) == 0}
                  for m in jax.device_get(self.items)]
    bad = [m["loss"] for m in self.items if not math.isfinite(m["loss"])]
    return bad[0] if bad else None

  def take_mean(self) -> dict[str, float]:
    """The mean of each scalar over the (fetched) window, which then starts anew."""
    mean = {k: float(np.mean([m[k] for m in self.items])) for k in self.items[0]}
    self.items = []
    return mean

  def state(self) -> list:
    return list(self.items)
