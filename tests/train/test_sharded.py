"""The sharded training step equals the single-device step (8 fake CPU devices)."""

import pytest

from tests.conftest import run_python

SCRIPT = r"""
import jax, numpy as np, ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
assert jax.device_count() == 8, jax.devices()
from robustdata.models import CNN
from robustdata.train import grad_rules, optim, step as step_lib
from robustdata.train.objectives import ERM
from robustdata.train.state import create_train_state

model = CNN(num_classes=10, channels=(8, 16), dense=32, norm="{norm}")
cfg = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False,
                                     weight_decay=5e-4, grad_clip_norm=0.0))
tx = optim.make_optimizer(cfg)
loss_fn = step_lib.make_loss_fn(model)
step_fn = step_lib.make_train_step(loss_fn, objective=ERM(None), grad_rule=grad_rules.plain_rule,
                                   tx=tx, augment=("crop", "flip"), crop_padding=1)
rng = np.random.default_rng(0)
batches = [dict(x=rng.normal(size=(64, 8, 8, 1)).astype(np.float32),
                y=rng.integers(0, 10, 64).astype(np.int32),
                weight=rng.uniform(0.5, 1.5, 64).astype(np.float32),
                mask=(np.arange(64) < 60).astype(np.float32),
                index=np.arange(64, dtype=np.int32)) for _ in range(4)]

def run(devices):
  mesh = Mesh(np.asarray(devices), ("data",))
  repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(8, 8, 1))
  state = jax.device_put(state, repl)
  step = jax.jit(step_fn, in_shardings=(jax.tree.map(lambda _: repl, state), data, repl),
                 out_shardings=(jax.tree.map(lambda _: repl, state), repl), donate_argnums=(0,))
  losses = []
  for b in batches:
    state, m = step(state, jax.device_put(b, data), np.float32(0.1))
    losses.append(float(m["loss"]))
  return jax.device_get(state), losses

one, l1 = run(jax.devices()[:1])
eight, l8 = run(jax.devices())
np.testing.assert_allclose(l1, l8, rtol=1e-5)
jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
             one.params, eight.params)
jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
             one.model_state, eight.model_state)
print("OK", l1)
"""


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_sharded_step_equals_single_device(norm):
  out = run_python(SCRIPT.replace("{norm}", norm), devices=8)
  assert "OK" in out.stdout


@pytest.mark.slow
def test_sharded_loop_equals_single_device(tmp_path):
  script = f"""
import json, jax
from robustdata import config_lib, runner
c = config_lib.base_config()
c.name = "sharded"; c.model.name = "cnn"; c.model.channels = (8, 16); c.model.dense = 32
c.train.epochs = 1; c.train.batch_size = 64; c.train.progress = "none"
_, r = runner.run(c, "{tmp_path}/" + str(jax.device_count()))
print("RESULT", json.dumps([r["test_loss"], r["test_accuracy"]]))
"""
  import json
  outs = [json.loads(run_python(script, devices=d).stdout.split("RESULT")[1]) for d in (1, 8)]
  assert abs(outs[0][0] - outs[1][0]) < 1e-4 and abs(outs[0][1] - outs[1][1]) < 1e-2
