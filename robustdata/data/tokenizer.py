"""Caption tokenizer: word-level over a vocabulary built from training captions, byte fallback.

Ids: 0 = PAD, 1 = SOT (start of text), 2 = EOT (end of text), 3..258 = the 256 bytes, then the
words. A word outside the vocabulary is written as the UTF-8 bytes of " " + word, so any text
round-trips (after normalisation: lower case, words and punctuation split on whitespace).

Truncation (a deliberate change from the reference tokenizer, which cuts at the context and
loses EOT): a caption longer than the context keeps SOT, the first `context_length - 2` tokens
and then EOT, so EOT pooling always finds the end token. Rows are right-padded with PAD.
"""

from __future__ import annotations

import collections
import json
import os
import re
from typing import Iterable, Sequence

import numpy as np

PAD, SOT, EOT = 0, 1, 2
BYTE_OFFSET = 3
NUM_SPECIAL = BYTE_OFFSET + 256
VOCAB_FILE = "vocab.json"
_WORD_RE = re.compile(r"[\w']+|[^\w\s]")


def normalize_words(text: str) -> list[str]:
  """Lower-cases `text` and splits it into words and single punctuation marks."""
  return _WORD_RE.findall(text.lower())


class Tokenizer:
  """Word-level tokenizer with a byte-level fallback for out-of-vocabulary words."""

  def __init__(self, words: Sequence[str], *, context_length: int = 32):
    if context_length < 3:
      raise ValueError(f"context_length must be >= 3 (SOT, a token, EOT), got {context_length}")
    self.words = list(words)
    self.context_length = int(context_length)
    self._index = {w: NUM_SPECIAL + i for i, w in enumerate(self.words)}

  @classmethod
  def build(cls, captions: Iterable[str], *, context_length: int = 32, min_count: int = 1,
            max_words: int | None = None) -> "Tokenizer":
    """Builds the vocabulary from `captions`: words seen >= min_count times, most frequent first."""
    counts = collections.Counter(w for c in captions for w in normalize_words(c))
    ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if max_words is not None:
      ranked = ranked[:max_words]
    return cls(ranked, context_length=context_length)

  @property
  def vocab_size(self) -> int:
    return NUM_SPECIAL + len(self.words)

  def encode_ids(self, text: str) -> list[int]:
    """Token ids of `text` without SOT/EOT or padding (bytes for unknown words)."""
    ids: list[int] = []
    for w in normalize_words(text):
      if w in self._index:
        ids.append(self._index[w])
      else:
        ids.extend(BYTE_OFFSET + b for b in (" " + w).encode("utf-8"))
    return ids

  def encode(self, text: str) -> np.ndarray:
    """One caption as (context_length,) int32: SOT, ids, EOT, PAD...; truncated keeping EOT."""
    ids = self.encode_ids(text)[: self.context_length - 2]
    row = np.full((self.context_length,), PAD, np.int32)
    row[: len(ids) + 2] = [SOT, *ids, EOT]
    return row

  def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
    """Captions as (N, context_length) int32."""
    out = np.full((len(texts), self.context_length), PAD, np.int32)
    for i, t in enumerate(texts):
      out[i] = self.encode(t)
    return out

  def decode(self, ids: Sequence[int]) -> str:
    """Text of a token row (specials dropped, byte runs re-joined), normalised spacing."""
    buf = bytearray()
    for t in np.asarray(ids).tolist():
      if t < BYTE_OFFSET:
        if t == EOT:
          break
        continue
      if t < NUM_SPECIAL:
        buf.append(t - BYTE_OFFSET)
      elif t - NUM_SPECIAL < len(self.words):
        buf.extend((" " + self.words[t - NUM_SPECIAL]).encode("utf-8"))
    return buf.decode("utf-8", errors="replace").strip()

  def save(self, directory: str) -> str:
    """Writes the vocabulary and context length to `directory/vocab.json`; returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, VOCAB_FILE)
    with open(path, "w") as f:
      json.dump({"context_length": self.context_length, "words": self.words}, f)
    return path

  @classmethod
  def load(cls, directory: str) -> "Tokenizer":
    """Reads a tokenizer written by `save`."""
    with open(os.path.join(directory, VOCAB_FILE)) as f:
      blob = json.load(f)
    return cls(blob["words"], context_length=blob["context_length"])


def eot_positions(tokens: np.ndarray) -> np.ndarray:
  """Index of EOT in each row (rows are SOT..EOT then PAD), i.e. the count of non-PAD - 1."""
  return (np.asarray(tokens) != PAD).sum(-1) - 1
