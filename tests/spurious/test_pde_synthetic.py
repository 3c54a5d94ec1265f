"""pde_synthetic data and the pde_conv model: patch composition, groups, cubic readout."""

import jax
import ml_collections
import numpy as np
import pytest

from robustdata.data import pde_synthetic as ps
from robustdata.models import pde_conv
from robustdata.registry import DATASETS, MODELS, ConfigError


@pytest.mark.parametrize("case,core,spur", [(1, 0.2, 1.0), (2, 1.0, 0.2)])
def test_patches_hold_core_spurious_and_noise(case, core, spur):
  splits = ps.make_pde_synthetic(n_train=2000, n_val=10, n_test=500, case=case, seed=1)
  v_c, v_s = np.array(splits.info["v_c"]), np.array(splits.info["v_s"])
  assert abs(v_c @ v_s) < 1e-6 and abs(np.linalg.norm(v_c) - 1) < 1e-6
  train = splits.train
  assert train.x.shape == (2000, 150) and splits.num_groups == 4
  patches = train.x.reshape(-1, 3, 50).astype(np.float64)
  y = 2 * train.y - 1
  a = 2 * train.spurious - 1
  core_hits = np.isclose(patches, (core * y)[:, None, None] * v_c, atol=1e-6).all(-1)
  spur_hits = np.isclose(patches, (spur * a)[:, None, None] * v_s, atol=1e-6).all(-1)
  assert (core_hits.sum(1) == 1).all() and (spur_hits.sum(1) == 1).all()
  noise = patches[~(core_hits | spur_hits)]
  assert noise.shape == (2000, 50) and abs(noise.std() - 1 / 8) < 0.005
  # Random patch order: the core patch visits every slot.
  assert (np.bincount(core_hits.argmax(1), minlength=3) > 500).all()
  np.testing.assert_array_equal(train.groups, train.y * 2 + train.spurious)
  agree = (train.y == train.spurious).mean()
  assert abs(agree - 0.98) < 0.01
  assert (np.bincount(train.groups, minlength=4) > 0).all()


def test_registry_config_and_bad_inputs():
  cfg = ml_collections.ConfigDict({"n_train": 100, "n_val": 0, "n_test": 50, "case": 2})
  splits = DATASETS._entries["pde_synthetic"](cfg)  # pylint: disable=protected-access
  assert splits.info["core_scale"] == 1.0 and len(splits.val) == 0
  with pytest.raises(ConfigError, match="config.data.case"):
    ps.make_pde_synthetic(case=3)
  with pytest.raises(ConfigError, match="config.data.spurious_correlation"):
    ps.make_pde_synthetic(spurious_correlation=1.2)


def test_pde_conv_is_sum_of_cubes_and_alignment():
  model = MODELS._entries["pde_conv"](ml_collections.ConfigDict({"num_filters": 3}), 2)  # pylint: disable=protected-access
  x = np.random.default_rng(0).standard_normal((4, 150)).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"], np.float64)
  bias = np.asarray(variables["params"]["bias"], np.float64)
  assert kernel.shape == (50, 6) and np.abs(kernel).max() <= 0.1 / np.sqrt(50)
  logits, features = model.apply(variables, x, return_features=True)
  expected = np.zeros((4, 2))
  for i in range(4):
    for c in range(2):
      for j in range(c * 3, c * 3 + 3):
        for p in range(3):
          expected[i, c] += (x[i, p * 50:(p + 1) * 50] @ kernel[:, j] + bias[j]) ** 3
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-9)
  assert features.shape == (4, 6)
  v_c = np.zeros(50)
  v_c[0] = 1.0
  v_s = np.zeros(50)
  v_s[1] = 1.0
  out = pde_conv.filter_alignment(variables["params"], v_c, v_s)
  assert out["core_alignment"] == pytest.approx(np.abs(kernel[0]).max())
  assert out["spurious_alignment"] == pytest.approx(np.abs(kernel[1]).max())
