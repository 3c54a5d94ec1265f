"""Zero-shot classification with prompt ensembles (the CLIP protocol of spec §0).

Per class: encode every template filled with the class name, normalise each embedding,
average, re-normalise. Predict the class with the largest cosine to the image embedding.
The model enters only through `encode_text(tokens) -> embeddings` and precomputed image
embeddings, so any dual encoder (or a jitted, sharded encoder) can be evaluated.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from robustdata.data.tokenizer import Tokenizer


def _normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(encode_text: Callable[[np.ndarray], np.ndarray], tokenizer: Tokenizer,
                     class_names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
  """(C, d) prompt-ensemble class embeddings (unit norm)."""
  texts = [t.format(c) for c in class_names for t in templates]
  emb = _normalize(np.asarray(encode_text(tokenizer.encode_batch(texts))))
  emb = emb.reshape(len(class_names), len(templates), -1).mean(axis=1)
  return _normalize(emb)


def zero_shot_logits(image_emb: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
  """(N, C) cosine similarities between images and classes."""
  return _normalize(image_emb) @ _normalize(class_emb).T


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """(N,) bool: label among the k largest logits."""
  top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
  return (top == np.asarray(labels)[:, None]).any(axis=1)


def zero_shot_accuracy(image_emb: np.ndarray, labels: np.ndarray, class_emb: np.ndarray, *,
                       topk: Sequence[int] = (1,)) -> dict[str, float]:
  """{'top1': ..., ...}: zero-shot top-k accuracy of `image_emb` against `class_emb`."""
  logits = zero_shot_logits(image_emb, class_emb)
  return {f"top{k}": float(topk_hits(logits, labels, k).mean()) for k in topk}
