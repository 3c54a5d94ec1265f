"""CLIP dual encoder: an image tower (small CNN or ViT), a text transformer, linear
projections to a joint space, L2 normalisation and a learnable temperature.

`logit_scale` is initialised at ln(1/0.07) and kept in [0, ln 100]: `clamp_logit_scale` (in
`robustdata.contrastive.optim`) clamps the parameter after each optimiser step as in the
reference code, and the forward pass also clips it, so logits never exceed 100·cos.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from robustdata.models.conv import conv_function
from robustdata.models.norm import GroupNorm
from robustdata.models.text import TextTransformer
from robustdata.models.vit import ViT
from robustdata.registry import MODELS, ConfigError, field_reader

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)


def l2_normalize(x: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
  """x / ||x|| along the last axis (in float32)."""
  x = x.astype(jnp.float32)
  return x * jnp.reciprocal(jnp.sqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), eps)))


class ConvTower(nn.Module):
  """A small CNN image encoder with GroupNorm (no batch statistics, so sharding is exact).

  Stages of two 3x3 convs (the first strided by 2 after the first stage), global mean pool;
  `conv` is the convolution, 'auto', 'xla' or 'cpu' (`robustdata.models.conv`).
  """

  widths: tuple[int, ...] = (32, 64, 128)
  groups: int = 8
  conv: str = "auto"

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x, conv = images, conv_function(self.conv)
    for i, w in enumerate(self.widths):
      for j in range(2):
        stride = 2 if (i > 0 and j == 0) else 1
        x = nn.Conv(w, (3, 3), strides=(stride, stride), use_bias=False, name=f"conv_{i}_{j}",
                    conv_general_dilated=conv)(x)
        x = nn.relu(GroupNorm(num_groups=min(self.groups, w), name=f"norm_{i}_{j}")(x))
    return x.mean(axis=(1, 2))


class CLIP(nn.Module):
  """Dual encoder returning L2-normalised (image, text) embeddings and the clipped logit scale."""

  vocab_size: int
  context_length: int
  embed_dim: int = 128
  image_tower: str = "cnn"
  cnn_widths: tuple[int, ...] = (32, 64, 128)
  vit_patch_size: int = 4
  vit_width: int = 128
  vit_depth: int = 4
  vit_heads: int = 4
  text_width: int = 128
  text_depth: int = 4
  text_heads: int = 4
  text_causal: bool = True
  conv: str = "auto"

  def setup(self):
    if self.image_tower == "cnn":
      self.visual = ConvTower(widths=tuple(self.cnn_widths), conv=self.conv)
    elif self.image_tower == "vit":
      self.visual = ViT(patch_size=self.vit_patch_size, width=self.vit_width,
                        depth=self.vit_depth, heads=self.vit_heads, conv=self.conv)
    else:
      raise ConfigError(f"config.model.image_tower={self.image_tower!r} is not known; allowed: cnn, vit")
    self.text = TextTransformer(vocab_size=self.vocab_size, context_length=self.context_length,
                                width=self.text_width, depth=self.text_depth,
                                heads=self.text_heads, causal=self.text_causal)
    self.image_projection = nn.Dense(self.embed_dim, use_bias=False)
    self.text_projection = nn.Dense(self.embed_dim, use_bias=False)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(LOGIT_SCALE_INIT), ())

  def encode_image(self, images: jnp.ndarray, train: bool = False,
                   normalize: bool = True) -> jnp.ndarray:
    """Image embeddings (B, embed_dim); un-normalised features with normalize=False."""
    z = self.image_projection(self.visual(images, train=train))
    return l2_normalize(z) if normalize else z

  def encode_text(self, tokens: jnp.ndarray, train: bool = False,
                  normalize: bool = True) -> jnp.ndarray:
    """Text embeddings (B, embed_dim) pooled at EOT."""
    z = self.text_projection(self.text(tokens, train=train))
    return l2_normalize(z) if normalize else z

  def image_features(self, images: jnp.ndarray) -> jnp.ndarray:
    """Un-projected image-tower features (for linear probes on the backbone)."""
    return self.visual(images, train=False)

  def __call__(self, images: jnp.ndarray, tokens: jnp.ndarray,
               train: bool = False) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    scale = jnp.clip(self.logit_scale, 0.0, LOGIT_SCALE_MAX)
    return self.encode_image(images, train), self.encode_text(tokens, train), scale


# The tower fields `make_clip` reads from config.model (vocab_size and context_length come
# from the data).
CLIP_DEFAULTS = {
    "embed_dim": 128, "image_tower": "cnn", "cnn_widths": (32, 64, 128), "vit_patch_size": 4,
    "vit_width": 128, "vit_depth": 4, "vit_heads": 4, "text_width": 128, "text_depth": 4,
    "text_heads": 4, "text_causal": True,
}


def make_clip(model_config: Any, *, vocab_size: Optional[int] = None,
              context_length: Optional[int] = None) -> CLIP:
  """A CLIP from config fields (`image_tower`, `embed_dim`, tower sizes; vocab from the data)."""
  if vocab_size is None:
    vocab_size = model_config.get("vocab_size", None)
  if context_length is None:
    context_length = model_config.get("context_length", None)
  if vocab_size is None or context_length is None:
    raise ConfigError("config.model.vocab_size and config.model.context_length are required "
                      "(take them from DataSplits.info)")
  get = field_reader(model_config, CLIP_DEFAULTS)
  return CLIP(
      vocab_size=int(vocab_size), context_length=int(context_length),
      embed_dim=int(get("embed_dim")), image_tower=get("image_tower"),
      cnn_widths=tuple(get("cnn_widths")),
      vit_patch_size=int(get("vit_patch_size")), vit_width=int(get("vit_width")),
      vit_depth=int(get("vit_depth")), vit_heads=int(get("vit_heads")),
      text_width=int(get("text_width")), text_depth=int(get("text_depth")),
      text_heads=int(get("text_heads")), text_causal=bool(get("text_causal")))


@MODELS.register("clip", defaults=CLIP_DEFAULTS)
def clip_from_config(model_config: Any, num_classes: int = 0) -> CLIP:
  """Registry entry: `num_classes` is unused (CLIP has no classifier head)."""
  del num_classes
  return make_clip(model_config)
