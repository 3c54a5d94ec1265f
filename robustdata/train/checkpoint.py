"""A thin wrapper over orbax's CheckpointManager: the train state plus the host state
(policy, loop counters, best-so-far results) saved together, atomically, per step."""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored (corrupt, or from an incompatible config)."""


class Checkpointer:
  """Saves and restores (TrainState, host dict) under `<run dir>/checkpoints/<step>/`."""

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "host"))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, host: dict) -> None:
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     host=ocp.args.JsonSave(host)))
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> tuple[Any, dict]:
    """Restores the latest (or given) step onto `abstract_state`'s structure and shardings."""
    step = self.latest_step() if step is None else step
    path = os.path.join(self.directory, str(step))
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), host=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for bad files and mismatched trees
      raise CheckpointError(
          f"cannot restore the checkpoint at {path}: {type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}. It is corrupt or was written by an "
          "incompatible config or code version; delete that step directory to fall back to an "
          "earlier checkpoint, or the whole checkpoints/ directory to start over.") from None
    state, host = restored["state"], restored["host"]
    _check_tree(abstract_state, state, path)
    return state, host

  def close(self) -> None:
    self.manager.close()


def _check_tree(expected: Any, got: Any, path: str) -> None:
  exp_leaves, exp_tree = jax.tree.flatten(expected)
  got_leaves, got_tree = jax.tree.flatten(got)
  if exp_tree != got_tree:
    raise CheckpointError(f"the checkpoint at {path} has a different structure than this "
                          "config's train state (incompatible checkpoint)")
  for e, g in zip(exp_leaves, got_leaves):
    if tuple(e.shape) != tuple(g.shape) or e.dtype != g.dtype:
      raise CheckpointError(f"the checkpoint at {path} holds an array of shape {g.shape} "
                            f"{g.dtype} where this config expects {e.shape} {e.dtype} "
                            "(incompatible checkpoint)")
