"""Evaluator probes: a probe of a few rows pads only to the next power of two (>= 32, a
multiple of the devices) and returns the same values as a whole-batch probe."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from robustdata.data.dataset import Dataset
from robustdata.models import MLP
from robustdata.train import step as step_lib
from robustdata.train.evaluate import Evaluator
from robustdata.train.state import create_train_state
import optax


def _setup():
  model = MLP(num_classes=3, hidden=(16,))
  state = create_train_state(model, optax.sgd(0.1), rng=jax.random.PRNGKey(0), input_shape=(6,))
  rng = np.random.default_rng(0)
  data = Dataset(x=rng.normal(size=(300, 6)).astype(np.float32),
                 y=rng.integers(0, 3, 300).astype(np.int32), ids=np.arange(300))
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  return model, state, data, Evaluator(model, mesh, batch_size=256)


@pytest.mark.parametrize("n, chunk", [(1, 32), (5, 32), (33, 64), (200, 256), (256, 256),
                                      (300, 256)])
def test_probe_chunk_sizes_and_values(n, chunk):
  model, state, data, evaluator = _setup()
  x = np.asarray(data.x[:n])
  chunks = [b["x"].shape[0] for _, b in evaluator._batches(x, data.y[:n], small=True)]
  assert chunks[0] == chunk and all(c == chunks[0] for c in chunks)
  idx = np.random.default_rng(1).permutation(300)[:n]
  logits = model.apply({"params": state.params, **state.model_state}, data.x[idx], train=False)
  want = np.asarray(step_lib.probe_outputs(logits, logits, data.y[idx])["loss"])
  got = evaluator.probe("loss", state, data, idx)
  assert got.shape == (n,)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
