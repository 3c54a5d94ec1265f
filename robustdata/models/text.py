"""The CLIP text tower: token + position embeddings, transformer blocks, EOT pooling.

Token rows are SOT, ids, EOT, then PAD (id 0) as written by `robustdata.data.tokenizer`, so the
EOT position is the count of non-PAD tokens minus one; the feature is LN(x) at that position.
Attention is causal by default (as in CLIP); padding keys are always masked out.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from robustdata.models.vit import TransformerBlock


class TextTransformer(nn.Module):
  """Transformer over token ids (B, L) -> (B, width) features at the EOT token."""

  vocab_size: int
  context_length: int
  width: int = 128
  depth: int = 4
  heads: int = 4
  causal: bool = True

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    b, length = tokens.shape
    x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02),
                 name="token_embedding")(tokens)
    pos = self.param("positional_embedding", nn.initializers.normal(0.01),
                     (self.context_length, self.width))
    x = x + pos[:length]
    valid = tokens != 0
    mask = nn.make_attention_mask(jnp.ones_like(valid), valid)  # (B, 1, L, L): keys not PAD
    if self.causal:
      mask = nn.combine_masks(mask, nn.make_causal_mask(tokens))
    for i in range(self.depth):
      x = TransformerBlock(self.width, self.heads, name=f"block_{i}")(x, mask=mask)
    x = nn.LayerNorm(name="ln_final")(x)
    eot = jnp.maximum(valid.sum(-1) - 1, 0)
    return x[jnp.arange(b), eot]
