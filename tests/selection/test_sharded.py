"""Selection with rows sharded over 8 fake CPU devices equals the unsharded selection."""

import json

from tests.conftest import run_python

SCRIPT = r"""
import json
import jax
import numpy as np
from jax.sharding import Mesh
from robustdata.selection import facility_location

assert jax.device_count() == 8
mesh = Mesh(np.array(jax.devices()), ("data",))
rng = np.random.default_rng(0)
labels = np.repeat([0, 1], [200, 200])
proxies = rng.normal(size=(400, 6)).astype(np.float32)
out = {}
for method, kernel in (("lazy", "craig"), ("dense", "exp")):
  single = facility_location(proxies, labels, budget=30, kernel=kernel, method=method, block=128)
  sharded = facility_location(proxies, labels, budget=30, kernel=kernel, method=method,
                              mesh=mesh, block=128)
  out[f"{method}-{kernel}"] = [np.array_equal(single[0], sharded[0]),
                               np.array_equal(single[1], sharded[1])]
print("RESULT" + json.dumps(out))
"""


def test_sharded_selection_matches_single_device():
  out = json.loads(run_python(SCRIPT, devices=8).stdout.split("RESULT")[1])
  assert all(all(v) for v in out.values()), out
