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
  v20 = ResNet20(10).init(jax.random.PRNGKey(0), x)
  assert 0.26e6 < _count(v20["params"]) < 0.28e6  # He et al.: 0.27M
  assert "batch_stats" in v20
  v18 = jax.eval_shape(lambda: ResNet18(10).init(jax.random.PRNGKey(0), x))
  assert 11.1e6 < _count(v18["params"]) < 11.3e6  # CIFAR ResNet-18: 11.2M


@pytest.mark.parametrize("model", [MLP(7), CNN(7), CNN(7, norm="group"), ResNet20(7, norm="group")])
def test_logits_and_features(model):
  x = jnp.ones((3, 16, 16, 3))
  v = model.init(jax.random.PRNGKey(0), x)
  logits, feats = model.apply(v, x, train=False, return_features=True)
  assert logits.shape == (3, 7) and feats.shape[0] == 3
  assert "batch_stats" not in v  # group/none norms keep no state (DP-compatible)


def test_unknown_norm_is_named():
  with pytest.raises(ConfigError, match="config.model.norm='layer' is not known"):
    CNN(3, norm="layer").init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 1)))
