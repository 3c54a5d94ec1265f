"""Metric writers (JSON lines + TensorBoard) and the progress display."""

from __future__ import annotations

import collections
import json
import math
import os
import sys
import time
from typing import Any, Optional

import numpy as np

from robustdata.tb_events import EventWriter


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
  """Appends records to `metrics.jsonl` and scalars to TensorBoard event files.

  Each record is one line written with a single `os.write`, so a kill leaves at most one torn
  last line. `offset()` is the byte length committed so far; stored in a checkpoint, it lets a
  resumed run cut the file back to exactly what an uninterrupted run had written by then.
  """

  def __init__(self, run_dir: str, *, resume_offset: Optional[int] = None, resume_step: int = 0,
               tensorboard: bool = True):
    """Opens `<run_dir>/metrics.jsonl` for a run resuming at `resume_step` (0: a fresh run,
    whose old file is emptied). `resume_offset` (from the checkpoint) truncates the file to
    that byte length; without it (older checkpoints) records after `resume_step` are dropped.
    A torn or unparseable trailing line is dropped either way, with a note on stderr."""
    self.path = os.path.join(run_dir, "metrics.jsonl")
    _repair(self.path, resume_offset=resume_offset, resume_step=resume_step)
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    self._offset = os.lseek(self._fd, 0, os.SEEK_END)
    self._tb = (EventWriter(os.path.join(run_dir, "tensorboard"), purge_step=resume_step + 1)
                if tensorboard else None)

  def write(self, step: int, split: str, metrics: dict[str, Any], **extra: Any) -> None:
    record = {"step": int(step), "split": split, **_jsonable(extra), **_jsonable(metrics)}
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    written = os.write(self._fd, line)
    while written < len(line):  # a short write (e.g. the disk filled): finish or raise
      written += os.write(self._fd, line[written:])
    self._offset += len(line)
    if self._tb is not None:
      for k, v in metrics.items():
        if isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v)):
          self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def offset(self) -> int:
    """Bytes of metrics.jsonl written so far: store it in the checkpoint's host state."""
    return self._offset

  def sync(self) -> None:
    """Makes the records written so far durable (call before saving a checkpoint)."""
    os.fsync(self._fd)
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._fd >= 0:
      os.close(self._fd)
      self._fd = -1
    if self._tb is not None:
      self._tb.close()
      self._tb = None


class NullWriter:
  """The metric writer of every process but 0 in a multi-process run: it records nothing
  (process 0 writes metrics.jsonl and TensorBoard) and has MetricsWriter's interface."""

  def __init__(self, run_dir: str, *, resume_offset: Optional[int] = None, resume_step: int = 0):
    del run_dir, resume_step
    self.path = None
    self._offset = resume_offset or 0

  def write(self, step: int, split: str, metrics: dict[str, Any], **extra: Any) -> None:
    del step, split, metrics, extra

  def offset(self) -> int:
    return self._offset

  def sync(self) -> None:
    pass

  def close(self) -> None:
    pass


def _repair(path: str, *, resume_offset: Optional[int], resume_step: int) -> None:
  """Cuts metrics.jsonl back to the records of a run resuming at `resume_step`."""
  if not os.path.exists(path):
    if resume_offset:
      _note(f"{path} is missing; the records before the checkpoint are lost")
    return
  if resume_offset is None and resume_step == 0:  # a fresh run
    with open(path, "r+b") as f:
      f.truncate(0)
    return
  with open(path, "rb") as f:
    data = f.read()
  original = data
  if data and not data.endswith(b"\n"):
    data = data[:data.rfind(b"\n") + 1]
    _note(f"dropped the torn last line of {path} (the run was killed while writing it)")
  if resume_offset is not None:
    if resume_offset > len(data):
      _note(f"{path} holds {len(data)} bytes, fewer than the {resume_offset} its checkpoint "
            "recorded (records were lost); keeping them all")
    else:
      data = data[:resume_offset]
      if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        _note(f"byte {resume_offset} recorded by the checkpoint is inside a record of {path}; "
              "dropped that record")
  kept, bad = [], 0
  for line in (data[:-1].split(b"\n") if data else []):  # data ends with a newline here
    line += b"\n"
    record = _parse(line)
    if record is None:
      bad += bool(line.strip())
    elif resume_offset is not None or record["step"] <= resume_step:
      kept.append(line)
  if bad:
    _note(f"dropped {bad} unparseable line(s) of {path}")
  data = b"".join(kept)
  if data != original:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)


def _parse(line: bytes) -> Optional[dict]:
  try:
    record = json.loads(line)
  except ValueError:
    return None
  return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def _note(text: str) -> None:
  print(f"note: {text}", file=sys.stderr, flush=True)


RECENT_UPDATES = 5  # the progress line's rate and ETA are over this many recent updates


class Progress:
  """A tqdm bar (step, loss, throughput, ETA) on a terminal; plain log lines otherwise."""

  def __init__(self, *, total_steps: int, initial: int, mode: str = "auto"):
    if mode == "auto":
      mode = "bar" if sys.stderr.isatty() else "log"
    self.mode, self.total = mode, total_steps
    self._bar = None
    self._recent = collections.deque([(time.time(), initial)], maxlen=RECENT_UPDATES + 1)
    if mode == "bar":
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total_steps, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, metrics: dict[str, float], examples_per_sec: float) -> None:
    if self.mode == "bar":
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}",
                            ex_s=f"{examples_per_sec:.0f}")
    elif self.mode == "log":
      rate = self.steps_per_sec(step)
      eta = (self.total - step) / rate if rate > 0 else float("inf")
      acc = f"acc={metrics['accuracy']:.4f} " if "accuracy" in metrics else ""
      print(f"step {step}/{self.total} loss={metrics.get('loss', float('nan')):.4f} {acc}"
            f"{rate:.1f} steps/s {examples_per_sec:.0f} ex/s eta {eta:.0f}s", flush=True)

  def steps_per_sec(self, step: int, now: Optional[float] = None) -> float:
    """Steps per second over the last RECENT_UPDATES updates (ending at `step`), so the first
    compile and earlier phases do not skew the rate and the ETA for the rest of a run."""
    now = time.time() if now is None else now
    self._recent.append((now, step))
    then, then_step = self._recent[0]
    return (step - then_step) / max(now - then, 1e-9)

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
