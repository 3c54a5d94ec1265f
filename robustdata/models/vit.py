"""A small Vision Transformer (pre-LN blocks, class token) for CLIP image towers on small images.

`TransformerBlock` is shared with the text tower (`robustdata.models.text`).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from robustdata.models.conv import conv_function


class TransformerBlock(nn.Module):
  """Pre-LayerNorm block: x + MHA(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

  width: int
  heads: int
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    h = nn.LayerNorm(name="ln_1")(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attn")(h, h, mask=mask)
    h = nn.LayerNorm(name="ln_2")(x)
    h = nn.Dense(int(self.width * self.mlp_ratio), name="mlp_in")(h)
    return x + nn.Dense(self.width, name="mlp_out")(nn.gelu(h))


class ViT(nn.Module):
  """ViT image encoder: patches -> class token + learned positions -> blocks -> LN(class token).

  Returns (B, width) features (the caller projects them). Images are NHWC. `conv` is the
  patch embedding's convolution, 'auto', 'xla' or 'cpu' (`robustdata.models.conv`).
  """

  patch_size: int = 4
  width: int = 128
  depth: int = 4
  heads: int = 4
  mlp_ratio: float = 4.0
  conv: str = "auto"

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="patch_embed",
                conv_general_dilated=conv_function(self.conv))(images)
    b, gh, gw, _ = x.shape
    x = x.reshape(b, gh * gw, self.width)
    cls = self.param("class_embedding", nn.initializers.normal(0.02), (self.width,))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.width)), x], axis=1)
    x = x + self.param("positional_embedding", nn.initializers.normal(0.02), x.shape[1:])
    x = nn.LayerNorm(name="ln_pre")(x)
    for i in range(self.depth):
      x = TransformerBlock(self.width, self.heads, self.mlp_ratio, name=f"block_{i}")(x)
    return nn.LayerNorm(name="ln_post")(x[:, 0])
