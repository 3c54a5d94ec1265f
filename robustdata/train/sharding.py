"""The device mesh: a `data` axis over all devices, batches sharded on it, params replicated.

Multi-host runs call `jax.distributed.initialize()` (when `config.train.distributed` is set or
the environment names a coordinator) and each host feeds its slice of the global batch through
`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

_COORDINATOR_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def maybe_initialize_distributed(requested: bool) -> None:
  """Initialises multi-host JAX once when asked by the config or the environment."""
  if jax.process_count() > 1:
    return
  if requested or any(os.environ.get(k) for k in _COORDINATOR_ENV):
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def host_slice(global_batch_size: int) -> slice:
  """The rows of the global batch this process feeds."""
  per_host = global_batch_size // jax.process_count()
  start = jax.process_index() * per_host
  return slice(start, start + per_host)


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Places a global host batch on the mesh, each process contributing its rows."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  rows = host_slice(len(next(iter(batch.values()))))
  return {k: jax.make_array_from_process_local_data(sharding, v[rows]) for k, v in batch.items()}
