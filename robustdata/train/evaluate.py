"""Compiled, batched forward passes over host datasets: evaluation metrics and the probes
policies use (logits, losses, gradient proxies, features), eval mode, un-augmented."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from robustdata.data.dataset import Dataset
from robustdata.evals import classification
from robustdata.evals import groups as group_evals
from robustdata.train import sharding as sharding_lib
from robustdata.train import step as step_lib
from robustdata.train.state import TrainState


class Evaluator:
  """Compiled, batched forward passes over host datasets (evaluation and policy probes).

  Shard-wise across processes: each process reads only the rows of a chunk its devices hold,
  and every process gets the whole (replicated) output, so host-side decisions agree."""

  def __init__(self, model, mesh, *, batch_size: int):
    self.batch_size = batch_size
    self.sharding = sharding_lib.batch_sharding(mesh)
    self._replicated = sharding_lib.replicated(mesh)
    eval_step = step_lib.make_eval_step(model)
    self._forward = jax.jit(eval_step, out_shardings=self._replicated)
    self._probes: dict[str, Any] = {}

  def _batches(self, x: np.ndarray, y: np.ndarray, indices: np.ndarray | None = None, *,
               small: bool = False):
    """Static-shape chunks of batch_size rows of x[indices], y[indices] (all rows if None);
    this process reads only the rows of each chunk its devices hold. `small`: fewer rows than
    that are padded only to the next power of two (>= 32; rounded up to a multiple of the
    devices), so a probe of a few rows does not cost a whole batch (a few more shapes, each
    compiled once)."""
    size, total = self.batch_size, len(x) if indices is None else len(indices)
    if small and total < size:
      devices = self.sharding.mesh.size
      pow2 = max(32, 1 << (total - 1).bit_length())
      size = min(size, -(-pow2 // devices) * devices)
    mine = sharding_lib.process_rows(self.sharding, size)
    for start in range(0, total, size):
      take = np.arange(start, min(start + size, total))
      n = len(take)
      if n < size:  # pad to the static shape by repeating the chunk's rows
        take = np.concatenate([take, take[np.arange(size - n) % n]])
      take = (take if indices is None else indices[take])[mine]
      yield n, sharding_lib.put_local({"x": x[take], "y": y[take].astype(np.int32)},
                                      self.sharding, size)

  def logits_and_features(self, state: TrainState, data: Dataset) -> tuple[np.ndarray, ...]:
    logits, feats = [], []
    for n, b in self._batches(data.x, data.y):
      lg, ft = self._forward(state.params, state.model_state, b["x"])
      logits.append(np.asarray(lg)[:n])
      feats.append(np.asarray(ft)[:n])
    return np.concatenate(logits), np.concatenate(feats)

  def probe(self, name: str, state: TrainState, data: Dataset, indices: np.ndarray) -> np.ndarray:
    """Probe `name` (see step.PROBES) on data[indices], eval mode, un-augmented."""
    if name not in step_lib.PROBES:
      raise ValueError(f"unknown probe {name!r}; allowed: {list(step_lib.PROBES)}")
    if name not in self._probes:
      forward = self._forward

      def probe_fn(params, model_state, x, y):
        logits, feats = forward(params, model_state, x)
        return step_lib.probe_outputs(logits, feats, y)[name]

      self._probes[name] = jax.jit(probe_fn, out_shardings=self._replicated)
    indices = np.asarray(indices, np.int64)
    out = []
    for n, b in self._batches(data.x, data.y, indices, small=True):
      out.append(np.asarray(self._probes[name](state.params, state.model_state, b["x"], b["y"]))[:n])
    return np.concatenate(out) if out else np.zeros((0,))


def evaluate_split(evaluator: Evaluator, state: TrainState, data: Dataset, *,
                   splits, train_group_counts) -> dict[str, Any]:
  """Accuracy, loss, per-class accuracy and, where the data has groups, the group metrics
  (worst-group, average weighted by the training group proportions, spurious accuracy)."""
  if len(data) == 0:
    return {}
  logits, _ = evaluator.logits_and_features(state, data)
  out = classification.classification_metrics(logits, data.y, num_classes=splits.num_classes)
  if "label_flipped" in data.extras:  # a train split with label noise (data/label_noise.py)
    out.update(classification.label_noise_metrics(
        logits.argmax(-1), data.y, data.extras["clean_y"], data.extras["label_flipped"]))
  if data.groups is not None and splits.num_groups:
    out.update(group_evals.group_report(
        logits.argmax(-1), data.y, data.groups, num_groups=splits.num_groups,
        train_group_counts=train_group_counts, group_names=splits.group_names or None,
        spurious=data.spurious))
  return out
