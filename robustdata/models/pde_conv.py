"""The PDE paper's two-layer cubic convolution for the synthetic patch data (spec §4).

Input: (B, num_patches * patch_dim) (or (B, num_patches, patch_dim)). Each class c owns
`num_filters` filters w of length patch_dim (kernel = stride = patch_dim, i.e. one response per
patch); logit_c = sum over the filters of c and over the patches of (w . x_p + b)^3. Weights and
biases are drawn like a PyTorch Conv1d (uniform +-1/sqrt(patch_dim)) and scaled by `init_scale`.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robustdata.registry import MODELS, field_reader


def _scaled_uniform(scale: float, fan_in: int) -> Callable:
  bound = scale / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class PDEConv(nn.Module):
  """Cubic-activation patch convolution with a fixed sum readout per class."""

  num_classes: int = 2
  num_filters: int = 20
  patch_dim: int = 50
  init_scale: float = 0.1

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False, return_features: bool = False):
    del train  # no dropout or batch statistics
    patches = x.reshape((x.shape[0], -1, self.patch_dim))
    total = self.num_classes * self.num_filters
    kernel = self.param("kernel", _scaled_uniform(self.init_scale, self.patch_dim),
                        (self.patch_dim, total))
    bias = self.param("bias", _scaled_uniform(self.init_scale, self.patch_dim), (total,))
    # (B, P, K): response of every filter to every patch; cube and sum over patches.
    features = jnp.sum((patches @ kernel + bias) ** 3, axis=1)
    logits = features.reshape((x.shape[0], self.num_classes, self.num_filters)).sum(-1)
    return (logits, features) if return_features else logits


def filter_alignment(params, v_c: np.ndarray, v_s: np.ndarray) -> dict[str, float]:
  """max over filters of |<w, v_c>| and of |<w, v_s>| (the paper's feature-learning probe)."""
  kernel = np.asarray(params["kernel"], dtype=np.float64)  # (patch_dim, filters)
  core = np.abs(np.asarray(v_c, np.float64) @ kernel)
  spurious = np.abs(np.asarray(v_s, np.float64) @ kernel)
  return {"core_alignment": float(core.max()), "spurious_alignment": float(spurious.max())}


PDE_CONV_DEFAULTS = {"num_filters": 20, "patch_dim": 50, "init_scale": 0.1}


@MODELS.register("pde_conv", defaults=PDE_CONV_DEFAULTS)
def _pde_conv(cfg, num_classes: int) -> PDEConv:
  get = field_reader(cfg, PDE_CONV_DEFAULTS)
  return PDEConv(num_classes=num_classes, num_filters=int(get("num_filters")),
                 patch_dim=int(get("patch_dim")), init_scale=float(get("init_scale")))
