"""A thin wrapper over orbax's CheckpointManager: the train state plus the host state
(policy, loop counters, best-so-far results) saved together, atomically, per step.

Every step directory also gets `integrity.json`, written last (so it is this wrapper's commit
marker): the run's identity (config hash, seed), the step, the orbax commit markers present,
the sha256 of the host state and of every array leaf. A restore verifies all of it and falls
back to the newest intact checkpoint, saying so; checkpoints without the record (written
before it existed) restore as unverified legacy checkpoints, still checked for orbax's commit
markers, structure, shapes and step.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from robustdata import run_dir as run_dir_lib

RECORD = "integrity.json"  # written into each step directory after orbax commits it
FORMAT = 1
HOST_KEY = "_checkpoint"  # reserved host-state key: {"format", "step"}, saved inside orbax's commit
# The commit markers orbax (>= 0.12.8, the pinned minimum) writes into a finished step.
ORBAX_MARKERS = ("commit_success.txt", "state/commit_success.txt", "host/commit_success.txt",
                 "_CHECKPOINT_METADATA")
LEGACY_REQUIRED = ("commit_success.txt", "state/commit_success.txt", "host/commit_success.txt")


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored (corrupt, or from an incompatible config)."""


class _Corrupt(Exception):
  """One step directory failed verification; the message says why."""


class Checkpointer:
  """Saves and restores (TrainState, host dict) under `<run dir>/checkpoints/<step>/`.

  `identity` (e.g. {"config_hash": ..., "seed": ...}) is recorded with every checkpoint; a
  restore refuses checkpoints recorded under another identity. None records and checks none.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2,
               identity: Optional[dict[str, Any]] = None):
    self.directory = os.path.abspath(directory)
    self.identity = dict(identity) if identity else None
    self.restored_step: Optional[int] = None  # the step the last restore() returned
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "host"))

  @property
  def run(self) -> str:
    """The run directory holding these checkpoints (the directory itself if not `checkpoints`)."""
    if os.path.basename(self.directory) == "checkpoints":
      return os.path.dirname(self.directory)
    return self.directory

  def latest_step(self) -> Optional[int]:
    """The newest step on disk (not yet verified; `restore` falls back past a corrupt one)."""
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, host: dict) -> None:
    """Saves `state` and the JSON-ready `host` dict as `step`, then its integrity record."""
    if step in self.manager.all_steps():
      return
    if HOST_KEY in host:
      raise ValueError(f"host state key {HOST_KEY!r} is reserved for the checkpointer")
    host = {**host, HOST_KEY: {"format": FORMAT, "step": int(step)}}
    primary = jax.process_index() == 0  # writes the record
    arrays = _array_records(state) if primary else None  # the bytes orbax is handed

    def write_record():
      step_dir = self._step_dir(step)
      record = {"format": FORMAT, "step": int(step), "identity": self.identity,
                "host_sha256": _host_digest(host), "arrays": arrays,
                "orbax_markers": [m for m in ORBAX_MARKERS
                                  if os.path.exists(os.path.join(step_dir, m))],
                "orbax_version": ocp.__version__}
      run_dir_lib.write_json(os.path.join(step_dir, RECORD), record)

    try:  # every process takes part in orbax's save (process 0 writes the host JSON)
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       host=ocp.args.JsonSave(host)))
      self.manager.wait_until_finished()
      # Then process 0 writes the record; the others wait for it, so no process moves on to
      # a later save or a restore before this checkpoint is committed.
      run_dir_lib.on_primary(write_record, what=f"commit checkpoint {step} in {self.directory}")
    except OSError as e:
      raise CheckpointError(f"cannot write checkpoint {step} to {self.directory}: "
                            f"{e.strerror or e}") from None

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> tuple[Any, dict]:
    """Restores onto `abstract_state`'s structure and shardings, verified.

    With `step` None: the newest intact checkpoint. Each newer corrupt or foreign one is named
    in one line on stderr and moved aside to `<step>.corrupt` (so a later save of that step
    is not skipped). A given `step` is restored or raises. Raises CheckpointError naming the
    step and the directory when no checkpoint is intact."""
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    failures: list[tuple[int, str]] = []
    for s in steps:
      try:
        state, host, legacy = self._restore_verified(abstract_state, s)
      except _Corrupt as e:
        failures.append((s, str(e)))
        continue
      for bad, why in failures if jax.process_index() == 0 else ():
        print(f"checkpoint {bad} of run {self.run} is corrupt ({why}); falling back to "
              f"checkpoint {s}", file=sys.stderr, flush=True)
      if failures:
        self._quarantine([bad for bad, _ in failures])
      if legacy and jax.process_index() == 0:
        print(f"note: checkpoint {s} of run {self.run} has no checksums (written before they "
              "existed); restored it unverified", file=sys.stderr, flush=True)
      self.restored_step = s
      return state, host
    bad, why = failures[0]
    raise CheckpointError(
        f"checkpoint {bad} of run {self.run} is corrupt: {self._step_dir(bad)}: {why}"
        + (f" (and {len(failures) - 1} older checkpoints are unusable too)"
           if len(failures) > 1 else "")
        + f"; remove {self.directory} to start over")

  def close(self) -> None:
    self.manager.close()

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _restore_verified(self, abstract_state: Any, step: int) -> tuple[Any, dict, bool]:
    """(state, host, legacy) of `step`, or _Corrupt saying what is wrong with it."""
    step_dir = self._step_dir(step)
    record = _read_record(step_dir)
    legacy = record is None
    if record is not None:
      if record.get("step") != step:
        raise _Corrupt(f"its integrity record is for step {record.get('step')}")
      _check_identity(record.get("identity"), self.identity)
      required = record.get("orbax_markers", [])
    else:
      required = LEGACY_REQUIRED
    missing = [m for m in required if not os.path.exists(os.path.join(step_dir, m))]
    if missing:
      raise _Corrupt(f"orbax commit marker {missing[0]} is missing")
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), host=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for bad files and mismatched trees
      first = str(e).splitlines()[0].split(". See ")[0][:200] if str(e) else ""
      raise _Corrupt(f"orbax cannot read it: {type(e).__name__}: {first}; it is corrupt or was "
                     "written by an incompatible config or code version") from None
    state, host = restored["state"], restored["host"]
    _check_tree(abstract_state, state)
    if not isinstance(host, dict) or not host:
      raise _Corrupt(f"its host state is {'empty' if isinstance(host, dict) else 'not a dict'}")
    marker = host.get(HOST_KEY)
    if record is None and marker is not None:
      raise _Corrupt(f"its commit marker {RECORD} is missing: the save did not finish")
    if record is not None:
      if _host_digest(host) != record.get("host_sha256"):
        raise _Corrupt("its host state does not match its checksum")
      if not isinstance(marker, dict) or marker.get("step") != step:
        raise _Corrupt("its host state belongs to another step")
      _check_arrays(record.get("arrays"), state)
    host = {k: v for k, v in host.items() if k != HOST_KEY}
    if isinstance(host.get("step"), int) and host["step"] != step:
      raise _Corrupt(f"its host state is at step {host['step']}")
    return state, host, legacy

  def _quarantine(self, steps: list[int]) -> None:
    """Moves corrupt step directories aside as `<step>.corrupt[-k]`, which orbax ignores
    (process 0 moves them; every process reloads the step list after)."""
    run_dir_lib.on_primary(lambda: self._move_aside(steps),
                           what=f"move corrupt checkpoints aside in {self.directory}")
    self.manager.reload()

  def _move_aside(self, steps: list[int]) -> None:
    for step in steps:
      target = f"{self._step_dir(step)}.corrupt"
      k = 0
      while os.path.exists(target):
        k += 1
        target = f"{self._step_dir(step)}.corrupt-{k}"
      try:
        os.rename(self._step_dir(step), target)
      except OSError:
        pass  # a read-only directory: the restore still skips it


def restore_finished(directory: str, abstract_state: Any, *, missing: str,
                     identity: Optional[dict[str, Any]] = None) -> Any:
  """The train state of the newest intact checkpoint in `directory` (another, finished run's:
  an upstream stage, a pre-trained model); a directory without one raises ConfigError(missing)."""
  from robustdata.registry import ConfigError  # pylint: disable=g-import-not-at-top
  source = Checkpointer(directory, max_to_keep=1000, identity=identity)
  try:
    if source.latest_step() is None:
      raise ConfigError(missing)
    return source.restore(abstract_state)[0]
  finally:
    source.close()


def _array_records(state: Any) -> list[dict[str, Any]]:
  """[{path, shape, dtype, sha256}] of every leaf, hashed from its host bytes (sha256 None
  for a leaf this process does not hold whole)."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    a = _host_array(leaf)
    out.append({"path": jax.tree_util.keystr(path), "shape": list(np.shape(leaf)),
                "dtype": str(np.dtype(leaf.dtype)) if hasattr(leaf, "dtype") else None,
                "sha256": None if a is None else _array_digest(a)})
  return out


def _host_array(leaf: Any) -> Optional[np.ndarray]:
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if leaf.is_fully_addressable:
      return np.asarray(leaf)
    if leaf.sharding.is_fully_replicated:
      return np.asarray(leaf.addressable_shards[0].data)
    return None
  return np.asarray(leaf)


def _array_digest(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8)).hexdigest()


def _host_digest(host: dict) -> str:
  """sha256 of the canonical JSON of the host state (the same before saving and restored)."""
  canonical = json.dumps(json.loads(json.dumps(host)), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode()).hexdigest()


def _check_arrays(expected: Any, state: Any) -> None:
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  if not isinstance(expected, list) or len(expected) != len(leaves):
    raise _Corrupt("its array checksums do not match its train state")
  for want, (path, leaf) in zip(expected, leaves):
    name = jax.tree_util.keystr(path)
    if want.get("path") != name or list(want.get("shape", [])) != list(np.shape(leaf)):
      raise _Corrupt(f"array {name} is not the array its checksums describe")
    if want.get("sha256") is None:
      continue
    a = _host_array(leaf)
    if a is not None and _array_digest(a) != want["sha256"]:
      raise _Corrupt(f"array {name} does not match its checksum")


def _check_identity(recorded: Any, expected: Optional[dict[str, Any]]) -> None:
  if not recorded or not expected:
    return
  differ = sorted(k for k in expected if k in recorded and recorded[k] != expected[k])
  if differ:
    theirs = ", ".join(f"{k}={recorded[k]}" for k in differ)
    ours = ", ".join(f"{k}={expected[k]}" for k in differ)
    raise _Corrupt(f"it was written by another run ({theirs}; this run has {ours})")


def _read_record(step_dir: str) -> Optional[dict[str, Any]]:
  path = os.path.join(step_dir, RECORD)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise _Corrupt(f"its {RECORD} is unreadable ({type(e).__name__})") from None
  if not isinstance(record, dict):
    raise _Corrupt(f"its {RECORD} is not a JSON object")
  if record.get("format") != FORMAT:
    raise _Corrupt(f"its {RECORD} has format {record.get('format')!r}, this code reads {FORMAT}")
  return record


def _check_tree(expected: Any, got: Any) -> None:
  exp_leaves, exp_tree = jax.tree.flatten(expected)
  got_leaves, got_tree = jax.tree.flatten(got)
  if exp_tree != got_tree:
    raise _Corrupt("it has a different structure than this config's train state "
                   "(incompatible checkpoint)")
  for e, g in zip(exp_leaves, got_leaves):
    if tuple(e.shape) != tuple(g.shape) or e.dtype != g.dtype:
      raise _Corrupt(f"it holds an array of shape {g.shape} {g.dtype} where this config "
                     f"expects {e.shape} {e.dtype} (incompatible checkpoint)")
