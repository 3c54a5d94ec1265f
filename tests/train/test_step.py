"""The step's pieces against independent references: loss, plain rule, loader, schedules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from robustdata import losses
from robustdata.data.dataset import Dataset
from robustdata.data.loader import BatchLoader
from robustdata.data.policies import FullData
from robustdata.models import MLP
from robustdata.selection.augment_coreset import AugmentCoreset
from robustdata.train import grad_rules, optim, step as step_lib
from robustdata.train.objectives import ERM
from robustdata.train.state import create_train_state
from tests.conftest import run_python


def _softmax64(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def test_cross_entropy_with_smoothing_matches_numpy():
  rng = np.random.default_rng(0)
  logits, y = rng.normal(size=(7, 5)), rng.integers(0, 5, 7)
  for eps in (0.0, 0.1):
    target = (1 - eps) * np.eye(5)[y] + eps / 5
    want = -(target * np.log(_softmax64(logits))).sum(-1)
    got = losses.cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(y), label_smoothing=eps)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_plain_rule_is_weighted_mean_gradient_of_real_rows():
  """Softmax regression: grad W = X^T (diag(w*mask) (P - Y)) / sum(mask), in float64."""
  rng = np.random.default_rng(1)
  model = MLP(num_classes=3, hidden=())
  x = rng.normal(size=(8, 4)).astype(np.float32)
  y = rng.integers(0, 3, 8)
  w = rng.uniform(0.5, 2.0, 8).astype(np.float32)
  mask = np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  batch = {"x": x, "y": y, "weight": w, "mask": mask}
  loss_fn = step_lib.make_loss_fn(model)
  grads, _, aux = grad_rules.plain_rule(loss_fn, params, {}, batch, jax.random.PRNGKey(0),
                                        lambda l, b: b["weight"])
  W, b = (np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias"))
  resid = (_softmax64(x @ W + b) - np.eye(3)[y]) * (w * mask)[:, None] / mask.sum()
  np.testing.assert_allclose(np.asarray(grads["head"]["kernel"]), x.T @ resid, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grads["head"]["bias"]), resid.sum(0), rtol=1e-5, atol=1e-6)
  assert aux["losses"].shape == (8,)


def test_train_step_matches_manual_sgd_update():
  rng = np.random.default_rng(2)
  model = MLP(num_classes=3, hidden=(5,))
  cfg = ml_collections.ConfigDict({"name": "sgd", "learning_rate": 0.3, "momentum": 0.0,
                                   "nesterov": False, "weight_decay": 0.0, "grad_clip_norm": 0.0})
  tx = optim.make_optimizer(cfg)
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(4,))
  batch = {"x": rng.normal(size=(6, 4)).astype(np.float32), "y": rng.integers(0, 3, 6),
           "weight": np.ones(6, np.float32), "mask": np.ones(6, np.float32)}
  loss_fn = step_lib.make_loss_fn(model)
  step = jax.jit(step_lib.make_train_step(loss_fn, objective=ERM(None), grad_rule=grad_rules.plain_rule,
                                          tx=tx))
  grads = jax.grad(lambda p: jnp.mean(loss_fn(p, {}, batch, None)[0]))(state.params)
  want = jax.tree.map(lambda p, g: p - 0.05 * g, state.params, grads)
  new_state, metrics = step(state, batch, np.float32(0.05))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               new_state.params, want)
  assert int(new_state.step) == 1 and abs(float(metrics["lr"]) - 0.05) < 1e-8


def test_schedules():
  base = dict(learning_rate=1.0, warmup_epochs=2.0, milestones=(3, 5), gamma=0.1)
  lr = optim.lr_schedule(ml_collections.ConfigDict({**base, "schedule": "step"}), epochs=10)
  np.testing.assert_allclose([lr(0), lr(1), lr(2), lr(4.9), lr(5), lr(7.5)],
                             [0, 0.5, 1, 1, 0.1, 0.01])
  lr = optim.lr_schedule(ml_collections.ConfigDict({**base, "schedule": "cosine"}), epochs=10)
  np.testing.assert_allclose([lr(2), lr(6), lr(10)], [1.0, 0.5, 0.0], atol=1e-12)


def test_loader_pads_with_mask_and_static_shape():
  data = Dataset(x=np.arange(20, dtype=np.float32).reshape(10, 2), y=np.arange(10) % 3,
                 ids=np.arange(10) + 100, groups=np.arange(10) % 2)
  loader = BatchLoader(data, batch_size=8, sharding=None, with_groups=True)
  b = loader.host_batch(np.array([9, 3, 4]), np.array([1.0, 2.0, 0.5], np.float32))
  assert b["x"].shape == (8, 2) and b["mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
  np.testing.assert_array_equal(b["index"][:3], [9, 3, 4])
  assert b["weight"].tolist() == [1.0, 2.0, 0.5, 0, 0, 0, 0, 0]
  np.testing.assert_array_equal(b["groups"], data.groups[b["index"]])
  assert set(b["index"][3:]) <= {9, 3, 4}  # padding repeats real rows


_RESIDENT_CHECK = """
import jax, numpy as np
from robustdata.data import loader as loader_lib
from robustdata.data.dataset import Dataset
from robustdata.train import sharding
rng = np.random.default_rng(0)
data = Dataset(x=rng.random((37, 4, 4, 3), dtype=np.float32), y=rng.integers(0, 5, 37),
               ids=np.arange(37), groups=rng.integers(0, 3, 37))
bsh = sharding.batch_sharding(sharding.make_mesh())
host = loader_lib.BatchLoader(data, batch_size=16, sharding=bsh, with_groups=True,
                              resident=False)
dev = loader_lib.BatchLoader(data, batch_size=16, sharding=bsh, with_groups=True)
assert dev.resident and not host.resident
for n in (16, 5, 1):
  idx, w = rng.choice(37, n, replace=False), rng.random(n).astype(np.float32)
  a, b = host.device_batch(idx, w), dev.device_batch(idx, w)
  assert sorted(a) == sorted(b), (sorted(a), sorted(b))
  for k in a:
    assert a[k].dtype == b[k].dtype and a[k].sharding == b[k].sharding, k
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
# The split's arrays replaced (a policy growing it): the resident copy follows.
data.x = data.x + 1.0
np.testing.assert_array_equal(np.asarray(dev.device_batch(np.arange(3), np.ones(3))["x"])[:3],
                              data.x[:3])
loader_lib.RESIDENT_BYTES = 0  # a split over the limit stays on the host path
assert not loader_lib.BatchLoader(data, batch_size=16, sharding=bsh, with_groups=True).resident
print("OK", jax.device_count())
"""


@pytest.mark.parametrize("devices", [1, 8])
def test_resident_loader_batches_equal_host_batches(devices):
  """A small split gathered on the devices gives the host path's batches: values, dtypes and
  shardings, padded or not, on one device and on 8 fake devices."""
  out = run_python(_RESIDENT_CHECK, devices=devices).stdout
  assert f"OK {devices}" in out, out


def test_augment_coreset_keeps_the_host_path():
  """augment_coreset writes its slots into the split in place every epoch, so its batches must
  not come from a device copy made before."""
  assert AugmentCoreset.rewrites_train and not FullData.rewrites_train


def test_probe_outputs_proxy_is_dloss_dlogits():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, 5))
  feats = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  out = step_lib.probe_outputs(logits, feats, y)
  want = jax.vmap(jax.grad(lambda l, t: losses.cross_entropy(l[None], t[None])[0]))(logits, y)
  np.testing.assert_allclose(out["proxy"], want, atol=1e-6)
  np.testing.assert_allclose(out["proxy_linear"].reshape(5, 4, 3),
                             np.einsum("bc,bd->bcd", want, feats), atol=1e-5)
