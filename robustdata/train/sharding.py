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
  """Initialises multi-host JAX once when asked by the config or the environment.

  Must run before anything asks JAX for its devices or process count (`runner.run` calls it
  first). Without a coordinator in the environment and no cluster JAX can detect, or when the
  coordinator cannot be reached, it stops with a ConfigError saying what to set."""
  env = {k: os.environ[k] for k in _COORDINATOR_ENV if os.environ.get(k)}
  if not (requested or env) or jax.distributed.is_initialized():
    return
  from robustdata.registry import ConfigError  # pylint: disable=g-import-not-at-top
  where = (f"coordinator {next(iter(env.values()))!r} from ${next(iter(env))}" if env
           else "no coordinator in the environment")
  count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
  try:
    jax.distributed.initialize(
        coordinator_address=next(iter(env.values()), None),
        num_processes=int(count) if count else None, process_id=int(index) if index else None,
        initialization_timeout=int(os.environ.get("JAX_INITIALIZATION_TIMEOUT", "300")))
  except (ValueError, RuntimeError) as e:
    first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
    raise ConfigError(
        f"config.train.distributed={requested} ({where}): jax.distributed.initialize() failed: "
        f"{first}. On a cluster JAX cannot detect, set JAX_COORDINATOR_ADDRESS=host:port, "
        "JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host; for one host, set "
        "config.train.distributed=False and unset JAX_COORDINATOR_ADDRESS.") from None


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
