"""CLIP loss over a batch sharded on 8 fake CPU devices == the single-device loss and grads.

Runs in a subprocess because the fake device count must be set before JAX is imported.
"""

import textwrap

from tests.conftest import run_python

SCRIPT = textwrap.dedent("""
  import numpy as np
  import jax, jax.numpy as jnp
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from robustdata import losses
  from robustdata.models.clip import l2_normalize

  assert jax.device_count() == 8, jax.devices()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  rng = np.random.default_rng(0)
  n, din, d = 32, 12, 8
  params = {"wi": jnp.asarray(rng.standard_normal((din, d)), jnp.float32),
            "wt": jnp.asarray(rng.standard_normal((din, d)), jnp.float32),
            "logit_scale": jnp.float32(np.log(1 / 0.07))}
  xi = rng.standard_normal((n, din)).astype(np.float32)
  xt = rng.standard_normal((n, din)).astype(np.float32)
  mask = np.ones(n, np.float32); mask[27:] = 0; mask[3] = 0

  def embed(p, xi, xt):
    return l2_normalize(xi @ p["wi"]), l2_normalize(xt @ p["wt"])

  def full(p, xi, xt, m):
    f, g = embed(p, xi, xt)
    return losses.clip_loss(f, g, p["logit_scale"], mask=m)

  sharded_loss = losses.make_sharded_clip_loss(mesh)
  def local(p, xi, xt, m):
    f, g = embed(p, xi, xt)
    return sharded_loss(f, g, p["logit_scale"], m)

  one = jax.devices()[0]
  put1 = lambda a: jax.device_put(a, one)
  ref = jax.jit(jax.value_and_grad(full))(*(put1(a) for a in (params, xi, xt, mask)))
  batch_sh = NamedSharding(mesh, P("data"))
  repl = NamedSharding(mesh, P())
  args = (jax.device_put(params, repl), jax.device_put(xi, batch_sh),
          jax.device_put(xt, batch_sh), jax.device_put(mask, batch_sh))
  for name, fn in (("full", full), ("local", local)):
    for m in (args[3], jax.device_put(np.ones(n, np.float32), batch_sh)):
      val, grads = jax.jit(jax.value_and_grad(fn))(*args[:3], m)
      if m is args[3]:
        rv, rg = ref
      else:
        rv, rg = jax.jit(jax.value_and_grad(full))(*(put1(a) for a in (params, xi, xt, np.ones(n, np.float32))))
      np.testing.assert_allclose(float(val), float(rv), rtol=1e-5)
      for k in grads:
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(rg[k]), rtol=1e-4, atol=1e-6,
                                   err_msg=name + ":" + k)
  assert len(args[1].sharding.device_set) == 8
  print("OK")
""")


def test_sharded_equals_unsharded_on_8_fake_devices():
  proc = run_python(SCRIPT, devices=8, timeout=120)  # raises with stderr on a non-zero exit
  assert "OK" in proc.stdout
