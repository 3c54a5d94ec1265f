"""The CPU convolution (`robustdata.models.conv`) against a float64 NumPy convolution and its
adjoint, and against lax.conv_general_dilated: every layer shape the models use, under jit and
batch-sharded on 8 fake devices; models and the ghost rule give the same numbers with either
implementation; `config.train.conv` is validated."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax import lax

from robustdata import config_lib, validation
from robustdata.models import conv as conv_lib
from robustdata.models.cnn import CNN
from robustdata.models.resnet import ResNet20
from robustdata.models.vit import ViT
from robustdata.privacy import clipping, rules
from robustdata.registry import ConfigError
from tests.conftest import run_python
from tests.privacy.privacy_models import erm_coef, make_problem

# (input shape, kernel HWIO, strides, padding): the convolutions of the CNN, ResNet-20 (stem,
# 3x3 stride 1 and 2 with explicit padding, 1x1 stride-2 projections), the CLIP ConvTower and
# the ViT patch embedding, plus VALID and odd sizes.
CASES = [
    ((2, 8, 8, 3), (3, 3, 3, 5), (1, 1), "SAME"),
    ((2, 8, 8, 3), (3, 3, 3, 5), (2, 2), "SAME"),
    ((2, 9, 9, 3), (3, 3, 3, 5), (2, 2), "SAME"),
    ((2, 9, 7, 3), (3, 3, 3, 5), (1, 1), "VALID"),
    ((2, 9, 9, 3), (3, 3, 3, 5), (2, 2), "VALID"),
    ((2, 8, 8, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1))),
    ((2, 8, 8, 3), (3, 3, 3, 5), (2, 2), ((1, 1), (1, 1))),
    ((2, 8, 8, 4), (1, 1, 4, 6), (2, 2), "SAME"),
    ((2, 8, 8, 4), (1, 1, 4, 6), (1, 1), "SAME"),
    ((2, 16, 16, 3), (4, 4, 3, 8), (4, 4), "VALID"),
    ((2, 18, 17, 3), (4, 4, 3, 8), (4, 4), "VALID"),
]
DIMS = ("NHWC", "HWIO", "NHWC")


def _pads(x_shape, kernel, strides, padding):
  if isinstance(padding, str):
    return lax.padtype_to_pads(x_shape[1:3], kernel[:2], strides, padding)
  return padding


def _numpy_conv(x, w, g, strides, padding):
  """Float64 forward y, and the adjoint's input and weight gradients for cotangent g, by a
  loop over filter offsets."""
  x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
  (lo_h, hi_h), (lo_w, hi_w) = _pads(x.shape, w.shape, strides, padding)
  xp = np.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
  oh = (xp.shape[1] - w.shape[0]) // strides[0] + 1
  ow = (xp.shape[2] - w.shape[1]) // strides[1] + 1
  y = np.zeros(x.shape[:1] + (oh, ow, w.shape[3]))
  dxp, dw = np.zeros_like(xp), np.zeros_like(w)
  for i in range(w.shape[0]):
    for j in range(w.shape[1]):
      rows = slice(i, i + (oh - 1) * strides[0] + 1, strides[0])
      cols = slice(j, j + (ow - 1) * strides[1] + 1, strides[1])
      y += np.einsum("bhwi,io->bhwo", xp[:, rows, cols], w[i, j])
      dxp[:, rows, cols] += np.einsum("bhwo,io->bhwi", g, w[i, j])
      dw[i, j] = np.einsum("bhwi,bhwo->io", xp[:, rows, cols], g)
  dx = dxp[:, lo_h:lo_h + x.shape[1], lo_w:lo_w + x.shape[2]]
  return y, dx, dw


def _flax_call(conv, x, w, strides, padding, **kw):
  """A call as nn.Conv makes it (positional strides and padding, canonical dimension
  numbers)."""
  dims = lax.conv_dimension_numbers(x.shape, w.shape, DIMS)
  return conv(x, w, strides, padding, lhs_dilation=(1, 1), rhs_dilation=kw.pop("rhs", (1, 1)),
              dimension_numbers=dims, feature_group_count=kw.pop("groups", 1), precision=None)


def _value_and_grads(conv, x, w, g, strides, padding, **kw):
  """Jitted (y, dx, dw) of <conv(x, w), g>."""
  def f(x, w):
    y = _flax_call(conv, x, w, strides, padding, **kw)
    return jnp.vdot(y, g), y
  (_, y), (dx, dw) = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(x, w)
  return y, dx, dw


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _close(got, ref, rtol=2e-5):
  """Equal to float32 rounding, relative to the reference's scale."""
  ref = np.asarray(ref)
  np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=rtol,
                             atol=rtol * float(np.max(np.abs(ref))))


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", CASES)
def test_slice_conv_equals_numpy_and_lax(x_shape, w_shape, strides, padding):
  x, w = _random(x_shape, 0), _random(w_shape, 1)
  y_shape = jax.eval_shape(lambda: _flax_call(lax.conv_general_dilated, x, w, strides,
                                              padding)).shape
  g = _random(y_shape, 2)
  ref = _numpy_conv(x, w, g, strides, padding)
  got = _value_and_grads(conv_lib.slice_conv_general_dilated, x, w, g, strides, padding)
  xla = _value_and_grads(lax.conv_general_dilated, x, w, g, strides, padding)
  for name, a, b, r in zip(("y", "dx", "dw"), got, xla, ref):
    assert a.shape == r.shape, name
    _close(a, r)
    _close(a, b)


@pytest.mark.parametrize("images", [1, 3, 6])
@pytest.mark.parametrize("case", [CASES[0], CASES[6], CASES[7]], ids=["3x3", "3x3s2", "1x1s2"])
def test_chunked_weight_gradient(monkeypatch, images, case):
  """The weight gradient accumulated over chunks of 1, 3 or all 6 images (a scan of 6, 2 or no
  steps) equals the float64 one."""
  _, w_shape, strides, padding = case
  x, w = _random((6,) + case[0][1:], 0), _random(w_shape, 1)
  y_shape = jax.eval_shape(lambda: _flax_call(lax.conv_general_dilated, x, w, strides,
                                              padding)).shape
  positions = y_shape[1] * y_shape[2]
  monkeypatch.setattr(conv_lib, "CHUNK_ROWS", images * positions + positions // 2)
  assert conv_lib.chunk_images(6, positions) == images
  g = _random(y_shape, 2)
  _, _, ref_dw = _numpy_conv(x, w, g, strides, padding)
  conv_lib._slice_conv.cache_clear()  # no VJP traced at another chunk size
  _, _, dw = _value_and_grads(conv_lib.slice_conv_general_dilated, x, w, g, strides, padding)
  _close(dw, ref_dw)


def test_unsupported_calls_fall_back_to_lax():
  """Grouped and kernel-dilated convolutions are lax's own (bit for bit)."""
  x, g = _random((2, 8, 8, 4), 0), _random((2, 8, 8, 6), 2)
  for w, kw in ((_random((3, 3, 2, 6), 1), {"groups": 2}),
                (_random((3, 3, 4, 6), 1), {"rhs": (2, 2)})):
    got = _value_and_grads(conv_lib.slice_conv_general_dilated, x, w, g, (1, 1), "SAME", **kw)
    ref = _value_and_grads(lax.conv_general_dilated, x, w, g, (1, 1), "SAME", **kw)
    for a, b in zip(got, ref):
      np.testing.assert_array_equal(a, b)


def test_choice():
  """'auto' is the CPU conv (the slice VJP on every call it handles) on CPU, XLA's elsewhere."""
  assert jax.default_backend() == "cpu"
  assert conv_lib.conv_function("auto") is conv_lib.cpu_conv_general_dilated
  assert conv_lib.conv_function("cpu") is conv_lib.cpu_conv_general_dilated
  assert conv_lib.conv_function("xla") is lax.conv_general_dilated


def test_auto_is_xla_off_cpu(monkeypatch):
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(conv_lib.jax, "default_backend", lambda b=backend: b)
    assert conv_lib.conv_function("auto") is lax.conv_general_dilated


def _model_loss_and_grads(model, x, y):
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x)["params"]

  def loss(p):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": p}, x), y))
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  return params, value, grads


@pytest.mark.parametrize("name", ["cnn", "resnet20", "vit"])
def test_models_equal_with_either_conv(name, monkeypatch):
  """Same parameter tree, loss and gradients with XLA's conv and with the CPU conv (the slice
  VJP on every layer, its weight gradient a scan over single images)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(4, 16, 16, 3)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 10, size=4))
  build = {"cnn": lambda c: CNN(10, channels=(4, 8), dense=16, conv=c),
           "resnet20": lambda c: ResNet20(10, norm="none", width=4).clone(conv=c),
           "vit": lambda c: _ViTClassifier(conv=c)}[name]
  ref_params, ref_loss, ref_grads = _model_loss_and_grads(build("xla"), x, y)
  monkeypatch.setattr(conv_lib, "CHUNK_ROWS", 1)
  conv_lib._slice_conv.cache_clear()  # no VJP traced at another chunk size
  params, loss, grads = _model_loss_and_grads(build("cpu"), x, y)
  assert jax.tree.structure(params) == jax.tree.structure(ref_params)
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)
  _close(loss, ref_loss)
  jax.tree.map(lambda a, b: _close(a, b, rtol=5e-5), grads, ref_grads)


class _ViTClassifier(nn.Module):
  """A small ViT with a linear head, so the patch embedding gets a gradient from a loss."""

  conv: str = "auto"

  @nn.compact
  def __call__(self, images, train=False):
    features = ViT(patch_size=4, width=16, depth=1, heads=2, conv=self.conv)(images, train)
    return nn.Dense(10, name="head")(features)


class _GhostNet(nn.Module):
  """3x3, strided 1x1 and strided 3x3 convs with GroupNorm and a Dense head."""

  conv: Any = lax.conv_general_dilated

  @nn.compact
  def __call__(self, x, train=True):
    x = nn.Conv(8, (3, 3), conv_general_dilated=self.conv)(x)
    x = nn.relu(nn.GroupNorm(num_groups=4)(x))
    x = nn.relu(nn.Conv(8, (1, 1), strides=2, conv_general_dilated=self.conv)(x))
    x = nn.Conv(6, (3, 3), strides=2, padding=1, use_bias=False,
                conv_general_dilated=self.conv)(x)
    return nn.Dense(3)(jnp.mean(nn.relu(x), axis=(1, 2)))


def test_ghost_norms_unchanged(monkeypatch):
  """The ghost rule's per-example norms and clipped sum are the same with XLA's conv and with
  the slice VJP on every conv layer."""
  recorded = []
  factors = clipping.clip_factors

  def recording(sq_norms, **kw):
    recorded.append(sq_norms)
    return factors(sq_norms, **kw)

  monkeypatch.setattr(clipping, "clip_factors", recording)
  out = {}
  for name, conv in (("xla", lax.conv_general_dilated),
                     ("slices", conv_lib.slice_conv_general_dilated)):
    loss_fn, params, batch = make_problem(_GhostNet(conv), batch_size=5, shape=(9, 9, 3))
    rule = rules.make_dp_rule(mode="clip_only", clip_norm=0.1, noise_multiplier=0.0,
                              expected_batch_size=4, method="ghost")

    def run(params, batch):
      total = rule(loss_fn, params, {}, batch, jax.random.PRNGKey(1), erm_coef)[0]
      return total, recorded[-1]
    out[name] = jax.jit(run)(params, batch)
  ref_total, ref_norms = out["xla"]
  total, norms = out["slices"]
  assert np.all(np.asarray(ref_norms)[:-1] > 0)  # every layer of every real row
  _close(norms, ref_norms, rtol=5e-5)
  jax.tree.map(lambda a, b: _close(a, b, rtol=5e-5), total, ref_total)


def test_config_field():
  """Unset means 'auto' and leaves the run id alone; a bad value is a ConfigError naming the
  field, the value and the allowed values."""
  config = config_lib.base_config()
  assert "conv" not in config.train
  assert conv_lib.conv_choice(config) == "auto"
  model = CNN(10)
  assert conv_lib.with_conv(model, config) is model
  config.train.conv = "xla"
  assert conv_lib.with_conv(model, config).conv == "xla"
  assert validation.range_errors(config) == []
  config.train.conv = "gpu"
  for check in (lambda: conv_lib.conv_choice(config), lambda: validation.check_ranges(config),
                lambda: conv_lib.conv_function("gpu")):
    with pytest.raises(ConfigError, match=r"config\.train\.conv='gpu'.*'auto', 'xla', 'cpu'"):
      check()
  assert conv_lib.conv_choice(ml_collections.ConfigDict({"train": {}})) == "auto"


_SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from robustdata.models import conv as conv_lib
assert jax.device_count() == 8
mesh = Mesh(np.array(jax.devices()), ("data",))
rng = np.random.default_rng(0)
dims = ("NHWC", "HWIO", "NHWC")
cases = [((16, 9, 9, 3), (3, 3, 3, 5), (2, 2), ((1, 1), (1, 1))),
         ((16, 8, 8, 4), (1, 1, 4, 6), (2, 2), "SAME"),
         ((16, 16, 16, 3), (4, 4, 3, 8), (4, 4), "VALID")]
# One chunk of all 16 images, and chunks of 2 images (a scan over the sharded batch).
for chunk_rows, (x_shape, w_shape, strides, padding) in [(r, c) for r in (4096, 40) for c in cases]:
  conv_lib.CHUNK_ROWS = chunk_rows
  x = jnp.asarray(rng.normal(size=x_shape).astype(np.float32))
  w = jnp.asarray(rng.normal(size=w_shape).astype(np.float32))
  def f(conv):
    def loss(x, w):
      y = conv(x, w, strides, padding, dimension_numbers=dims)
      return jnp.sum(jnp.sin(y)), y
    return jax.value_and_grad(loss, (0, 1), has_aux=True)
  ref = jax.jit(f(lax.conv_general_dilated))(x, w)
  sx = jax.device_put(x, NamedSharding(mesh, P("data")))
  sw = jax.device_put(w, NamedSharding(mesh, P()))
  step = jax.jit(f(conv_lib.slice_conv_general_dilated))
  # The chunks of the weight gradient's scan keep the batch sharded: no activation is gathered.
  assert "all-gather" not in step.lower(sx, sw).compile().as_text()
  got = step(sx, sw)
  assert got[1][0].sharding.spec == P("data"), got[1][0].sharding
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
    b = np.asarray(b)
    np.testing.assert_allclose(np.asarray(a), b, rtol=2e-5, atol=2e-5 * np.abs(b).max())
print("OK")
"""


def test_sharded_on_8_devices():
  proc = run_python(_SHARDED, devices=8, timeout=300)
  assert "OK" in proc.stdout
