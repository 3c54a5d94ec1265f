"""The batch loader: index batches and weights from a policy -> padded, sharded device batches.

Every batch has the same static shape (`batch_size` rows): a short batch is padded by repeating
its own rows with `mask` = 0 (repeating keeps BatchNorm statistics sane), so the step compiles
once. Under several processes each reads only the rows of a batch that its devices hold.
"""

from __future__ import annotations

import numpy as np

from robustdata.data.dataset import Dataset
from robustdata.registry import ConfigError
from robustdata.train import sharding as sharding_lib


class BatchLoader:
  """Gathers rows of a host Dataset into fixed-size batches and puts them on the mesh."""

  def __init__(self, data: Dataset, *, batch_size: int, sharding, with_groups: bool):
    self.data = data
    self.batch_size = batch_size
    self.sharding = sharding
    self.with_groups = with_groups and data.groups is not None

  def host_batch(self, indices: np.ndarray, weights: np.ndarray, *,
                 rows: slice = slice(None)) -> dict[str, np.ndarray]:
    """The padded host batch for `indices` (at most batch_size of them); only its `rows` (a
    process builds the rows its devices hold) are read from the dataset."""
    n = len(indices)
    if n == 0 or n > self.batch_size:
      raise ConfigError(f"a policy returned a batch of {n} indices; allowed: 1..{self.batch_size}"
                        " (config.train.batch_size)")
    if len(weights) != n:
      raise ValueError(f"policy returned {len(weights)} weights for {n} indices")
    pad = self.batch_size - n
    take = np.concatenate([indices, indices[np.arange(pad) % n]]) if pad else indices
    mask = np.zeros(self.batch_size, np.float32)
    mask[:n] = 1.0
    weight = np.zeros(self.batch_size, np.float32)
    weight[:n] = weights
    take, mask, weight = take[rows], mask[rows], weight[rows]
    batch = {"x": self.data.x[take], "y": self.data.y[take].astype(np.int32),
             "weight": weight, "mask": mask, "index": take.astype(np.int32)}
    if self.with_groups:
      batch["groups"] = self.data.groups[take].astype(np.int32)
    return batch

  def device_batch(self, indices: np.ndarray, weights: np.ndarray):
    """The batch on the mesh; this process reads only the rows its devices hold."""
    rows = sharding_lib.process_rows(self.sharding, self.batch_size)
    return sharding_lib.put_local(self.host_batch(indices, weights, rows=rows), self.sharding,
                                  self.batch_size)
