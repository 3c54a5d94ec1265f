"""Friendly Noise generation against a float64 NumPy reference of the whole optimisation (linear
softmax model, closed-form gradients), plus its effect, padding, resume, sharding and config
validation."""
# pylint: disable=protected-access

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata.poisoning import friendly_noise as fn
from robustdata.registry import ConfigError
from tests.conftest import run_python

ZETA = 16 / 255


def linear_logits(variables, x):
  return x.reshape(x.shape[0], -1) @ variables["w"] + variables["b"]


def linear_problem(b=8, shape=(4, 4, 1), k=5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, size=(b, *shape)).astype(np.float32)
  x[0, 0] = 0.0  # pixels on the [0, 1] edges, as in digit images
  x[1, 1] = 1.0
  d = int(np.prod(shape))
  variables = {"w": (3 * rng.normal(size=(d, k)) / np.sqrt(d)).astype(np.float32),
               "b": rng.normal(size=(k,)).astype(np.float32)}
  return x, variables


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_friendly(x, variables, eps0, mask, *, iterations, lr, momentum, nesterov, mu, clamp,
                   loss, milestones, gamma=0.1):
  """The reference algorithm in float64 with the linear model's closed-form input gradient."""
  w, bias = variables["w"].astype(np.float64), variables["b"].astype(np.float64)
  b = len(x)
  x = x.reshape(b, -1).astype(np.float64)
  d, k = x.shape[1], w.shape[1]
  mask = mask.astype(np.float64)[:, None]
  n = mask.sum()
  z0 = x @ w + bias
  ref = _log_softmax(z0) if loss == "kl" else z0
  eps, vel, losses = eps0.reshape(b, -1).astype(np.float64), 0.0, []
  for t in range(iterations):
    inside = np.abs(eps) <= clamp
    ec = np.clip(eps, -clamp, clamp)
    xp = x + ec
    in_box = (xp >= 0) & (xp <= 1)
    z = np.clip(xp, 0, 1) @ w + bias
    if loss == "kl":
      lq = _log_softmax(z)
      div = np.sum(np.exp(ref) * (ref - lq), -1, keepdims=True)
      dz = np.exp(lq) - np.exp(ref)
    else:
      div = np.mean((z - ref) ** 2, -1, keepdims=True)
      dz = 2 * (z - ref) / k
    losses.append(np.sum(mask * div) / n - mu * np.sum(mask * ec ** 2) / (n * d))
    grad = (mask / n * dz @ w.T) * in_box * inside - 2 * mu * mask * ec / (n * d) * inside
    vel = momentum * vel + grad
    step = grad + momentum * vel if nesterov else vel
    eps = eps - lr * gamma ** sum(t >= m for m in milestones) * step
  return np.clip(eps, -clamp, clamp).reshape(eps0.shape), np.array(losses)


@pytest.mark.parametrize("loss,nesterov,milestones,lr", [
    ("kl", True, None, 5.0), ("kl", False, (), 10.0), ("mse", True, (2, 3), 5.0)])
def test_matches_float64_reference(loss, nesterov, milestones, lr):
  x, variables = linear_problem()
  mask = np.ones(len(x), np.float32)
  mask[-2:] = 0.0  # padding rows
  key = jax.random.PRNGKey(3)
  hyper = dict(iterations=8, lr=lr, momentum=0.9, nesterov=nesterov,
               mu=1.0, clamp=ZETA, loss=loss)
  noise, info = fn.friendly_noise_batch(linear_logits, variables, x, key=key, mask=mask,
                                        init=8 / 255, milestones=milestones, **hyper)
  eps0 = np.asarray(fn.init_noise(key, x.shape, init=8 / 255))
  assert np.all(np.abs(eps0) <= 8 / 255) and np.abs(eps0).max() > 7 / 255
  expected, losses = numpy_friendly(
      x, variables, eps0, mask, milestones=fn.default_milestones(8) if milestones is None
      else milestones, **hyper)
  noise = np.asarray(noise)
  real = mask > 0
  np.testing.assert_allclose(noise[real], expected[real], rtol=1e-4, atol=5e-6)
  np.testing.assert_allclose(np.asarray(info["loss"]), losses, rtol=1e-4, atol=5e-7)
  # Both regimes of the clip are exercised: entries at the bound and entries inside.
  at_bound = np.isclose(np.abs(noise[real]), ZETA, rtol=0, atol=1e-7).mean()
  assert 0.05 < at_bound < 0.95, at_bound


def test_loss_of_one_iteration_equals_numpy():
  x, variables = linear_problem(seed=1)
  rng = np.random.default_rng(1)
  eps = rng.uniform(-2 * ZETA, 2 * ZETA, size=x.shape).astype(np.float32)  # some beyond zeta
  for loss in ("kl", "mse"):
    ref = fn.reference_outputs(linear_logits(variables, x), loss=loss)
    value, div = fn.friendly_loss(linear_logits, variables, x, eps, ref, mu=0.7, clamp=ZETA,
                                  loss=loss)
    # Independent float64 computation.
    w, b = variables["w"].astype(np.float64), variables["b"].astype(np.float64)
    x64 = x.reshape(len(x), -1).astype(np.float64)
    ec = np.clip(eps.reshape(len(x), -1).astype(np.float64), -ZETA, ZETA)
    z0, z = x64 @ w + b, np.clip(x64 + ec, 0, 1) @ w + b
    if loss == "kl":
      p0, q = _log_softmax(z0), _log_softmax(z)
      per = np.sum(np.exp(p0) * (p0 - q), -1)
    else:
      per = np.mean((z - z0) ** 2, -1)
    # float32 log-softmax: absolute error ~1e-7 on KLs near 0.
    np.testing.assert_allclose(np.asarray(div), per, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(value), per.mean() - 0.7 * np.mean(ec ** 2), rtol=1e-4,
                               atol=1e-6)


def test_clip_gradient_is_one_inside_including_the_ends():
  v = jnp.array([-2.0, -1.0, 0.0, 1.0, 2.0])
  grad = jax.vmap(jax.grad(lambda a: fn._clip(a, -1.0, 1.0)))(v)
  np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 1.0, 0.0])
  np.testing.assert_array_equal(fn._clip(v, -1.0, 1.0), [-1, -1, 0, 1, 1])


class TinyMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.tanh(nn.Dense(32)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(h)


def mlp_problem(n, shape, seed=0):
  x = jax.random.uniform(jax.random.PRNGKey(seed), (n, *shape))
  model = TinyMLP()
  variables = model.init(jax.random.PRNGKey(seed + 1), x)
  return np.asarray(x), variables, lambda v, a: model.apply(v, a)


def test_noise_grows_while_the_output_is_kept():
  x, variables, logits_fn = mlp_problem(16, (16, 16, 3))
  key = jax.random.PRNGKey(2)
  noise, info = fn.friendly_noise_batch(logits_fn, variables, x, key=key)  # reference defaults
  noise = np.asarray(noise)
  eps0 = np.asarray(fn.init_noise(key, x.shape, init=8 / 255))
  ref = fn.reference_outputs(logits_fn(variables, x))
  kl = lambda e: np.asarray(fn.divergence(ref, logits_fn(variables, jnp.clip(x + e, 0, 1))))
  sign = np.where(np.random.default_rng(0).random(x.shape) < 0.5, -1.0, 1.0).astype(np.float32)
  kl_final, kl_init, kl_flipped = kl(noise).mean(), kl(eps0).mean(), kl(noise * sign).mean()
  assert np.abs(noise).max() <= np.float32(ZETA)           # never beyond zeta
  assert np.abs(noise).mean() > 2.0 * np.abs(eps0).mean()  # grown (x2.8 measured)
  # Larger noise, yet the output moves far less than under the smaller random start, and far
  # less than under random signs of the same magnitudes (same |eps| per pixel).
  assert kl_final < 0.1 * kl_init, (kl_final, kl_init)
  assert kl_final < 0.01 * kl_flipped, (kl_final, kl_flipped)
  np.testing.assert_allclose(np.asarray(info["divergence"]), kl(noise), rtol=1e-3, atol=1e-8)
  assert np.asarray(info["loss"])[-1] < np.asarray(info["loss"])[0]


HYPER = dict(iterations=6, lr=20.0)


def test_padding_equals_batch_by_batch():
  x, variables, logits_fn = mlp_problem(11, (4, 4, 1))
  key = jax.random.PRNGKey(7)
  compiled = fn._friendly_noise._cache_size()
  out = fn.generate_friendly_noise(logits_fn, variables, x, key=key, batch_size=4, **HYPER)
  assert fn._friendly_noise._cache_size() == compiled + 1
  assert out.noise.shape == x.shape and out.noise.dtype == np.float32
  assert out.num_batches == 3 and out.resumed_batches == 0 and out.wall_time_s > 0
  for b, lo in enumerate(range(0, 11, 4)):
    noise, info = fn.friendly_noise_batch(logits_fn, variables, x[lo:lo + 4],
                                          key=jax.random.fold_in(key, b), **HYPER)
    np.testing.assert_allclose(out.noise[lo:lo + 4], noise, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.divergence[lo:lo + 4], info["divergence"], rtol=1e-5,
                               atol=1e-9)


class _Killed(Exception):
  pass


def test_resume_after_interruption_is_bitwise_identical(tmp_path):
  x, variables, logits_fn = mlp_problem(13, (4, 4, 1))
  key = jax.random.PRNGKey(8)
  full = fn.generate_friendly_noise(logits_fn, variables, x, key=key, batch_size=4, **HYPER)

  def kill_after_two(b, total):
    assert total == 4
    if b == 1:
      raise _Killed

  directory = str(tmp_path / "noise")
  with pytest.raises(_Killed):
    fn.generate_friendly_noise(logits_fn, variables, x, key=key, batch_size=4,
                               checkpoint_dir=directory, on_batch=kill_after_two, **HYPER)
  with open(os.path.join(directory, "progress.json")) as f:
    assert json.load(f)["batches_done"] == 2
  seen = []
  resumed = fn.generate_friendly_noise(logits_fn, variables, x, key=key, batch_size=4,
                                       checkpoint_dir=directory,
                                       on_batch=lambda b, t: seen.append(b), **HYPER)
  assert seen == [2, 3] and resumed.resumed_batches == 2
  np.testing.assert_array_equal(resumed.noise, full.noise)
  np.testing.assert_array_equal(resumed.divergence, full.divergence)
  again = fn.generate_friendly_noise(logits_fn, variables, x, key=key, batch_size=4,
                                     checkpoint_dir=directory, **HYPER)
  assert again.resumed_batches == 4
  np.testing.assert_array_equal(again.noise, full.noise)
  with pytest.raises(ValueError, match="holds friendly noise for other data"):
    fn.generate_friendly_noise(logits_fn, variables, x, key=jax.random.PRNGKey(9), batch_size=4,
                               checkpoint_dir=directory, **HYPER)


_SHARDED = r"""
import jax, numpy as np
import flax.linen as nn
from jax.sharding import Mesh
from robustdata.poisoning import friendly_noise as fn
assert jax.device_count() == 8

class TinyMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.tanh(nn.Dense(32)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(h)

model = TinyMLP()
x = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (20, 4, 4, 3)))
variables = model.init(jax.random.PRNGKey(1), x)
logits_fn = lambda v, a: model.apply(v, a)
key = jax.random.PRNGKey(5)
kw = dict(key=key, batch_size=16, iterations=6, lr=20.0)
plain = fn.generate_friendly_noise(logits_fn, variables, x, **kw)
mesh = Mesh(np.asarray(jax.devices()), ("data",))
sharded = fn.generate_friendly_noise(logits_fn, variables, x, mesh=mesh, **kw)
np.testing.assert_allclose(sharded.noise, plain.noise, rtol=1e-5, atol=1e-7)
np.testing.assert_allclose(sharded.divergence, plain.divergence, rtol=1e-4, atol=1e-9)
assert np.abs(plain.noise).max() > 0
print("OK")
"""


def test_sharded_equals_single_device_on_8_devices():
  assert "OK" in run_python(_SHARDED, devices=8, timeout=300).stdout


def test_defaults_are_valid():
  fn.validate_friendly(None)
  fn.validate_friendly(ml_collections.ConfigDict(fn.DEFAULTS))
  fn.validate_friendly({"milestones": (10, 20), "loss": "mse", "noise_kind": "none"})
  assert fn.DEFAULTS["noise_eps"] == 8 / 255 and fn.DEFAULTS["clamp"] == 16 / 255


@pytest.mark.parametrize("field,value", [
    ("clamp", -0.1), ("iterations", 0), ("iterations", 2.5), ("lr", 0.0), ("lr", -1.0),
    ("loss", "l1"), ("noise_kind", "salt"), ("noise_eps", -0.01), ("begin_epoch", -1),
    ("mu", -1.0), ("momentum", 1.0), ("batch_size", 0), ("milestones", ("a",)), ("milestones", 15),
    ("enabled", "yes"), ("lr", "fast"), ("nesterov", 1),
])
def test_each_validation_error_names_its_field(field, value):
  with pytest.raises(ConfigError, match=rf"config\.friendly\.{field}="):
    fn.validate_friendly({field: value})


def test_kernel_rejects_unknown_loss_and_zero_iterations():
  x, variables = linear_problem()
  with pytest.raises(ConfigError, match="config.friendly.loss"):
    fn.friendly_noise_batch(linear_logits, variables, x, key=jax.random.PRNGKey(0), loss="KL")
  with pytest.raises(ConfigError, match="config.friendly.iterations"):
    fn.friendly_noise_batch(linear_logits, variables, x, key=jax.random.PRNGKey(0),
                            iterations=0)
