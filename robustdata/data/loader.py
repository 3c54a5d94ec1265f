"""The batch loader: index batches and weights from a policy -> padded, sharded device batches.

Every batch has the same static shape (`batch_size` rows): a short batch is padded by repeating
its own rows with `mask` = 0 (repeating keeps BatchNorm statistics sane), so the step compiles
once. Under several processes each reads only the rows of a batch that its devices hold.

A small train split in one process (at most RESIDENT_BYTES over all its device copies) is put on
the mesh once, replicated, and each batch is gathered there by a jitted take of its indices: only
the indices, weights and mask cross from the host per step, instead of a host gather of the
images and their copy to the devices. The batches are the same arrays either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.data.dataset import Dataset
from robustdata.registry import ConfigError
from robustdata.train import sharding as sharding_lib

RESIDENT_BYTES = 256 * 2**20  # the train split's bytes times the local devices, at most


class BatchLoader:
  """Gathers rows of a host Dataset into fixed-size batches and puts them on the mesh."""

  def __init__(self, data: Dataset, *, batch_size: int, sharding, with_groups: bool,
               resident: bool = True):
    """`resident=False` keeps every batch on the host path (a policy that rewrites the rows of
    the split in place, e.g. augment_coreset's slots, would leave a resident copy stale)."""
    self.data = data
    self.batch_size = batch_size
    self.sharding = sharding
    self.with_groups = with_groups and data.groups is not None
    self.allow_resident = resident
    self._copies: dict[str, tuple[np.ndarray, jax.Array]] = {}  # name -> (host array, copy)
    self._gather = None

  def resident_bytes(self) -> int:
    """Bytes of the split's per-row arrays on all local devices if it were resident."""
    arrays = [self.data.x, self.data.y] + ([self.data.groups] if self.with_groups else [])
    return sum(a.nbytes for a in arrays) * len(self.sharding.mesh.local_devices)

  @property
  def resident(self) -> bool:
    """Whether batches are gathered on the devices from a resident copy of the split: a small
    in-memory split (RESIDENT_BYTES) in a single process, unless `resident=False`."""
    return (self.allow_resident and self.sharding is not None and jax.process_count() == 1
            and isinstance(self.data.x, np.ndarray) and self.resident_bytes() <= RESIDENT_BYTES)

  def take(self, arrays: dict, index: jax.Array) -> dict:
    """Rows `index` (a device batch's "index") of device arrays, sharded as a batch."""
    if self._gather is None:
      self._gather = jax.jit(lambda arrays, index: {k: jnp.take(v, index, axis=0)
                                                    for k, v in arrays.items()},
                             out_shardings=self.sharding)
    return self._gather(arrays, index)

  def device_rows(self, arrays: dict[str, np.ndarray], index: jax.Array) -> dict:
    """Rows `index` of per-row host arrays (the split's, or e.g. a victim's Friendly Noise),
    gathered from replicated device copies; an array is put on the mesh once, and again when
    it is replaced. 'y' and 'groups' become int32, as on the host path."""
    copies = {}
    for name, host in arrays.items():
      cached = self._copies.get(name)
      if cached is None or cached[0] is not host:
        value = host.astype(np.int32) if name in ("y", "groups") else host
        cached = (host, jax.device_put(value, sharding_lib.replicated(self.sharding.mesh)))
        self._copies[name] = cached
      copies[name] = cached[1]
    return self.take(copies, index)

  def host_batch(self, indices: np.ndarray, weights: np.ndarray, *,
                 rows: slice = slice(None)) -> dict[str, np.ndarray]:
    """The padded host batch for `indices` (at most batch_size of them); only its `rows` (a
    process builds the rows its devices hold) are read from the dataset."""
    take, mask, weight = (a[rows] for a in self._plan(indices, weights))
    batch = {"x": self.data.x[take], "y": self.data.y[take].astype(np.int32),
             "weight": weight, "mask": mask, "index": take}
    if self.with_groups:
      batch["groups"] = self.data.groups[take].astype(np.int32)
    return batch

  def _plan(self, indices: np.ndarray, weights: np.ndarray):
    """(rows to take, int32; mask; weight) of the padded batch of `indices`."""
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
    return take.astype(np.int32), mask, weight

  def device_batch(self, indices: np.ndarray, weights: np.ndarray):
    """The batch on the mesh; this process reads only the rows its devices hold."""
    if self.resident:
      take, mask, weight = self._plan(indices, weights)
      small = jax.device_put({"weight": weight, "mask": mask, "index": take}, self.sharding)
      split = {"x": self.data.x, "y": self.data.y}
      if self.with_groups:
        split["groups"] = self.data.groups
      return {**self.device_rows(split, small["index"]), **small}
    rows = sharding_lib.process_rows(self.sharding, self.batch_size)
    return sharding_lib.put_local(self.host_batch(indices, weights, rows=rows), self.sharding,
                                  self.batch_size)
