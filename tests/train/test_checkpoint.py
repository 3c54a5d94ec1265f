"""Checkpoint round trip, and clear errors for corrupt and incompatible checkpoints."""

import os

import jax
import numpy as np
import optax
import pytest

from robustdata.models import CNN, MLP
from robustdata.train.checkpoint import CheckpointError, Checkpointer
from robustdata.train.state import create_train_state


def _state(model, shape=(8, 8, 1)):
  tx = optax.sgd(0.1, momentum=0.9)
  return create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=shape)


def test_round_trip_is_exact(tmp_path):
  state = _state(CNN(num_classes=10, norm="batch"))
  state = state.replace(step=state.step + 5,
                        opt_state=jax.tree.map(lambda a: a + 0.25, state.opt_state))
  host = {"epoch": 3, "policy": {"rng": {"state": 2**100 + 7}, "plan": [[1, 2], [3]]}}
  ckpt = Checkpointer(str(tmp_path / "c"))
  ckpt.save(5, state, host)
  restored, host2 = Checkpointer(str(tmp_path / "c")).restore(jax.eval_shape(lambda: state))
  assert host2 == host
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert "batch_stats" in restored.model_state


def test_incompatible_checkpoint_is_named(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "c"))
  ckpt.save(1, _state(MLP(num_classes=10, hidden=(16,))), {"epoch": 0})
  other = _state(MLP(num_classes=10, hidden=(32,)))
  with pytest.raises(CheckpointError, match=r"c/1: .*incompatible"):
    Checkpointer(str(tmp_path / "c")).restore(jax.eval_shape(lambda: other))


def test_corrupt_checkpoint_is_named(tmp_path):
  state = _state(MLP(num_classes=10, hidden=(16,)))
  ckpt = Checkpointer(str(tmp_path / "c"))
  ckpt.save(1, state, {"epoch": 0})
  for root, _, files in os.walk(tmp_path / "c" / "1" / "state"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"\x00garbage")
  with pytest.raises(CheckpointError, match="corrupt"):
    Checkpointer(str(tmp_path / "c")).restore(jax.eval_shape(lambda: state))
