"""DP noise under sharding: the jitted rule on 8 fake CPU devices (batch sharded, params
replicated) equals the unsharded rule, so the noise is drawn once for the global batch."""

from tests.conftest import run_python

_CODE = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from robustdata.privacy import rules
from tests.privacy.privacy_models import MLP, erm_coef, make_problem
assert jax.device_count() == 8
loss_fn, params, batch = make_problem(MLP(), batch_size=16, shape=(3, 2))
for method in ("vmap", "ghost"):
  rule = rules.make_dp_rule(mode="dp_sgd", clip_norm=0.5, noise_multiplier=3.0,
                            expected_batch_size=15, method=method)
  step = lambda p, b: rule(loss_fn, p, {}, b, jax.random.PRNGKey(4), erm_coef)[0]
  plain = jax.jit(step)(params, batch)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sb = jax.device_put(batch, NamedSharding(mesh, P("data")))
  sp = jax.device_put(params, NamedSharding(mesh, P()))
  sharded = jax.jit(step, out_shardings=NamedSharding(mesh, P()))(sp, sb)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         plain, sharded)
  # Noise std of the sharded result is sigma*C/B (one draw), not sqrt(8) times that.
  clip = rules.make_dp_rule(mode="clip_only", clip_norm=0.5, noise_multiplier=0.0,
                            expected_batch_size=15, method=method)
  clean = jax.jit(lambda p, b: clip(loss_fn, p, {}, b, jax.random.PRNGKey(4), erm_coef)[0])(
      sp, sb)
  diff = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree_util.tree_leaves(sharded),
                                                         jax.tree_util.tree_leaves(clean))])
  std = 3.0 * 0.5 / 15
  assert abs(diff.std() - std) < 5 * std / np.sqrt(2 * diff.size), (diff.std(), std)
print("OK")
"""


def test_sharded_equals_unsharded_on_8_devices():
  proc = run_python(_CODE, devices=8, timeout=300)
  assert "OK" in proc.stdout
