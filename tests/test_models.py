"""Model shapes, parameter counts and state collections."""

import jax
import jax.numpy as jnp
import pytest

from robustdata.models import CNN, MLP, ResNet18, ResNet20
from robustdata.registry import ConfigError


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_resnet_parameter_counts_match_the_papers():
  x = jnp.zeros((1, 32, 32, 3))
  v20 = jax.eval_shape(lambda: ResNet20(10).init(jax.random.PRNGKey(0), x))
  assert 0.26e6 < _count(v20["params"]) < 0.28e6  # He et al.: 0.27M
  assert "batch_stats" in v20
  v18 = jax.eval_shape(lambda: ResNet18(10).init(jax.random.PRNGKey(0), x))
  assert 11.1e6 < _count(v18["params"]) < 11.3e6  # CIFAR ResNet-18: 11.2M


@pytest.mark.parametrize("model", [MLP(7), CNN(7), CNN(7, norm="group"), ResNet20(7, norm="group")])
def test_logits_and_features(model):
  x = jnp.ones((3, 16, 16, 3))
  v = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  logits, feats = jax.jit(lambda v, x: model.apply(v, x, train=False, return_features=True))(v, x)
  assert logits.shape == (3, 7) and feats.shape[0] == 3
  assert "batch_stats" not in v  # group/none norms keep no state (DP-compatible)


def test_unknown_norm_is_named():
  with pytest.raises(ConfigError, match="config.model.norm='layer' is not known"):
    CNN(3, norm="layer").init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 1)))


# --- config.model.width: the base count k of a width sweep (closed-form parameter counts). ---


def _built_count(name, input_shape, num_classes=10, **fields):
  import ml_collections
  from robustdata.registry import MODELS
  cfg = ml_collections.ConfigDict({"name": name, **fields})
  model = MODELS.get(name)(cfg, num_classes)
  x = jnp.zeros((1, *input_shape))
  return _count(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))["params"])


def _resnet_count(k, blocks, in_ch=3, classes=10):
  """ResNet with BatchNorm (no conv biases): stem, basic blocks, 1x1 projections, head."""
  total = 9 * in_ch * k + 2 * k
  prev = k
  for stage, n in enumerate(blocks):
    c = k * 2**stage
    for _ in range(n):
      total += 9 * prev * c + 2 * c + 9 * c * c + 2 * c
      if prev != c:
        total += prev * c + 2 * c
      prev = c
  return total + prev * classes + classes


@pytest.mark.parametrize("k", [1, 3, 16, 200])
def test_width_sets_mlp_and_cnn_parameter_counts(k):
  d, c = 64, 10  # 8x8x1 digits, 10 classes
  # MLP: one hidden layer of k units; two layers (2k, k).
  assert _built_count("mlp", (8, 8, 1), hidden=(128,), width=k) == d * k + k + k * c + c
  assert _built_count("mlp", (8, 8, 1), width=k) == (d * 2 * k + 2 * k + 2 * k * k + k
                                                      + k * c + c)
  # CNN, no norm (conv biases): conv k, pool 8->4, conv 2k, pool 4->2, dense 4k, head.
  expected = (9 * k + k) + (9 * k * 2 * k + 2 * k) + (4 * 2 * k * 4 * k + 4 * k) + 4 * k * c + c
  assert _built_count("cnn", (8, 8, 1), width=k, norm="none") == expected


def test_width_sets_resnet_parameter_counts():
  for k in (4, 16):
    assert _built_count("resnet20", (32, 32, 3), width=k) == _resnet_count(k, (3, 3, 3))
    assert _built_count("resnet32", (32, 32, 3), width=k) == _resnet_count(k, (5, 5, 5))
  assert _built_count("resnet20", (32, 32, 3)) == _resnet_count(16, (3, 3, 3))
  assert _built_count("resnet20", (32, 32, 3), width=None) == _resnet_count(16, (3, 3, 3))


def test_unset_width_keeps_the_default_shapes():
  for name, base in (("mlp", 128), ("cnn", 32)):
    default = _built_count(name, (8, 8, 1))
    assert _built_count(name, (8, 8, 1), width=None) == default
    assert _built_count(name, (8, 8, 1), width=base) == default
    assert _built_count(name, (8, 8, 1), width=base + 1) > default


@pytest.mark.parametrize("bad", [0, -4, 2.5, True])
def test_nonpositive_width_is_named(bad):
  with pytest.raises(ConfigError, match=r"config.model.width=.* must be a positive integer"):
    _built_count("mlp", (8, 8, 1), width=bad)


def test_width_is_in_the_run_id_only_when_set():
  from configs import quickstart
  from robustdata import config_lib, validation
  config = quickstart.get_config()
  assert config.model.name == "cnn" and config.model.width is None
  unset = config_lib.config_hash(config_lib.resolve(config))
  config.model.width = 32
  assert config_lib.config_hash(config_lib.resolve(config)) != unset
  config.model.width = 0
  with pytest.raises(ConfigError, match=r"config.model.width=0 is out of range"):
    validation.check_ranges(config)
  config.model.width, config.model.name = None, "resnet20"  # takes the ResNet's default 16
  resolved = config_lib.resolve(config)
  assert resolved.model.width == 16
  config.model.width = 16
  assert config_lib.config_hash(config_lib.resolve(config)) == config_lib.config_hash(resolved)
