"""The device mesh: a `data` axis over all devices, batches sharded on it, params replicated.

Multi-host runs call `jax.distributed.initialize()` (when `config.train.distributed` is set or
the environment names a coordinator) and each process builds only the rows of the global batch
its devices hold (`process_rows`) and feeds them through `jax.make_array_from_process_local_data`
(`put_local`). The helpers below the mesh let host-side decisions agree across processes
(docs/multihost.md).
"""

from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

_COORDINATOR_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def maybe_initialize_distributed(requested: bool) -> None:
  """Initialises multi-host JAX once when asked by the config or the environment.

  Must run before anything asks JAX for its devices or process count (`runner.run` calls it
  first). Without a coordinator in the environment and no cluster JAX can detect, a malformed
  variable, or a coordinator that does not answer within $JAX_INITIALIZATION_TIMEOUT seconds,
  it stops with a ConfigError saying what to set."""
  env = {k: os.environ[k] for k in _COORDINATOR_ENV if os.environ.get(k)}
  if not (requested or env) or jax.distributed.is_initialized():
    return
  from robustdata.registry import ConfigError  # pylint: disable=g-import-not-at-top
  address = next(iter(env.values()), None)
  where = f"coordinator {address!r} from ${next(iter(env))}" if env else (
      "no coordinator in the environment")
  count, index = _env_int("JAX_NUM_PROCESSES", 1), _env_int("JAX_PROCESS_ID", 0)
  timeout = _env_int("JAX_INITIALIZATION_TIMEOUT", 1, default=300)
  if address is not None and index:  # JAX aborts the process when it cannot reach it: ask first
    waited = _wait_for_coordinator(address, timeout)
    if waited is None:
      raise ConfigError(
          f"the {where} did not answer within {timeout} s ($JAX_INITIALIZATION_TIMEOUT): start "
          "process 0 (JAX_PROCESS_ID=0) on that host first, or correct the host:port; every "
          "process must name process 0's address")
    timeout = max(1, int(timeout - waited))
  try:
    jax.distributed.initialize(coordinator_address=address, num_processes=count,
                               process_id=index, initialization_timeout=timeout)
  except (ValueError, RuntimeError) as e:
    first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
    raise ConfigError(
        f"config.train.distributed={requested} ({where}): jax.distributed.initialize() failed: "
        f"{first}. On a cluster JAX cannot detect, set JAX_COORDINATOR_ADDRESS=host:port, "
        "JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host; for one host, set "
        "config.train.distributed=False and unset JAX_COORDINATOR_ADDRESS.") from None


def _env_int(name: str, minimum: int, default: int | None = None) -> int | None:
  """The integer environment variable `name` (>= minimum), else `default`; a ConfigError
  naming the variable for anything else."""
  raw = os.environ.get(name, "").strip()
  if not raw:
    return default
  try:
    value = int(raw)
  except ValueError:
    value = None
  if value is None or value < minimum:
    from robustdata.registry import ConfigError  # pylint: disable=g-import-not-at-top
    raise ConfigError(f"${name}={raw!r} must be an integer >= {minimum}")
  return value


def _wait_for_coordinator(address: str, timeout_s: float) -> float | None:
  """Seconds until a TCP connection to `address` (host:port) succeeded, or None after
  `timeout_s` without one."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    from robustdata.registry import ConfigError  # pylint: disable=g-import-not-at-top
    raise ConfigError(f"the coordinator address {address!r} must be host:port "
                      "($JAX_COORDINATOR_ADDRESS)")
  start = time.monotonic()
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
        return time.monotonic() - start
    except OSError:
      if time.monotonic() - start >= timeout_s:
        return None
      time.sleep(0.2)


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def is_primary() -> bool:
  """True on the process that writes the run directory's files (process 0)."""
  return jax.process_index() == 0


def process_rows(sharding: NamedSharding, global_rows: int) -> slice:
  """The rows of a global batch of `global_rows` that this process's devices hold under a
  batch `sharding`: one contiguous block (all rows in a single-process run)."""
  if jax.process_count() == 1:
    return slice(0, global_rows)
  spans = {(s.start or 0, global_rows if s.stop is None else s.stop)
           for (s, *_) in sharding.addressable_devices_indices_map((global_rows,)).values()}
  start, stop = min(a for a, _ in spans), max(b for _, b in spans)
  if sum(b - a for a, b in spans) != stop - start:
    raise ValueError(f"the devices of process {jax.process_index()} hold rows {sorted(spans)} "
                     "of the batch, not one contiguous block; build the mesh from jax.devices()")
  return slice(start, stop)


def put_local(batch: dict[str, np.ndarray], sharding: NamedSharding,
              global_rows: int) -> dict[str, jax.Array]:
  """Places this process's rows (`process_rows(sharding, global_rows)`) of a global batch on
  the mesh; every process passes its own rows and gets the same global arrays."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return {k: jax.make_array_from_process_local_data(sharding, v, (global_rows, *v.shape[1:]))
          for k, v in batch.items()}


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Places a global host batch on the mesh, each process contributing its rows (callers that
  can build only their rows use `process_rows` and `put_local`)."""
  n = len(next(iter(batch.values())))
  rows = process_rows(sharding, n)
  return put_local({k: v[rows] for k, v in batch.items()}, sharding, n)


def check_batch_fields(train, *, fields=("batch_size", "eval_batch_size")) -> None:
  """A ConfigError naming the field when a global batch size of `config.train` does not split
  evenly over the processes (each feeds the rows of its own devices)."""
  count = jax.process_count()
  for field in fields:
    value = train.get(field)
    if isinstance(value, int) and value % count:
      from robustdata.registry import ConfigError  # pylint: disable=g-import-not-at-top
      raise ConfigError(
          f"config.train.{field}={value} is not divisible by the number of processes "
          f"({count}); allowed values: multiples of {jax.device_count()} (the devices of all "
          "processes)")


def max_over_processes(value: int) -> int:
  """The largest of `value` over the processes (the same on every process)."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.asarray(multihost_utils.process_allgather(np.int32(value))).max())


def primary_succeeded(ok: bool) -> bool:
  """Process 0's `ok`, on every process: after a step only process 0 performs (taking the run
  lock, writing a file), the others learn whether it succeeded instead of waiting for it at
  the next collective. Also a barrier."""
  if jax.process_count() == 1:
    return bool(ok)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.asarray(multihost_utils.broadcast_one_to_all(np.int32(ok))))

