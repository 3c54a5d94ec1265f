"""EDA-style caption augmentation (random deletion, swap, insertion, synonym replacement).

Host-side, seeded with a `numpy.random.Generator`. Synonyms come from a table word -> list of
words (the embedded `captioned_shapes` source ships one) instead of WordNet, so no download is
needed. As in the RoCLIP/SafeCLIP/CleanCLIP code, `eda` builds one candidate per operation and
keeps one at random (= one random EDA op per caption); the caller decides whether captions are
augmented once per run (the reference behaviour) or per epoch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from robustdata.data.tokenizer import Tokenizer, normalize_words

OPS = ("synonym", "insert", "swap", "delete")


def synonym_replacement(words: list[str], rng: np.random.Generator, *, n: int,
                        synonyms: Mapping[str, Sequence[str]]) -> list[str]:
  """Replaces up to `n` distinct words that have synonyms with a random synonym each."""
  out = list(words)
  candidates = [i for i, w in enumerate(out) if synonyms.get(w)]
  for i in rng.permutation(candidates)[:n] if candidates else []:
    options = synonyms[out[i]]
    out[i] = options[int(rng.integers(len(options)))]
  return out


def random_insertion(words: list[str], rng: np.random.Generator, *, n: int,
                     synonyms: Mapping[str, Sequence[str]]) -> list[str]:
  """Inserts `n` times a synonym of a random word at a random position (no-op without synonyms)."""
  out = list(words)
  for _ in range(n):
    candidates = [w for w in out if synonyms.get(w)]
    if not candidates:
      break
    options = synonyms[candidates[int(rng.integers(len(candidates)))]]
    out.insert(int(rng.integers(len(out) + 1)), options[int(rng.integers(len(options)))])
  return out


def random_swap(words: list[str], rng: np.random.Generator, *, n: int) -> list[str]:
  """Swaps two random positions `n` times."""
  out = list(words)
  if len(out) < 2:
    return out
  for _ in range(n):
    i, j = rng.choice(len(out), size=2, replace=False)
    out[i], out[j] = out[j], out[i]
  return out


def random_deletion(words: list[str], rng: np.random.Generator, *, p: float) -> list[str]:
  """Drops each word with probability `p`, keeping one random word if all would go."""
  if len(words) <= 1:
    return list(words)
  keep = rng.random(len(words)) >= p
  if not keep.any():
    return [words[int(rng.integers(len(words)))]]
  return [w for w, k in zip(words, keep) if k]


def eda(text: str, rng: np.random.Generator, *, synonyms: Mapping[str, Sequence[str]],
        alpha_sr: float = 0.1, alpha_ri: float = 0.1, alpha_rs: float = 0.1,
        p_rd: float = 0.1) -> str:
  """One EDA-augmented version of `text`: one op chosen uniformly (strength ~ alpha * length)."""
  words = normalize_words(text)
  n_of = lambda alpha: max(1, int(alpha * len(words)))
  op = OPS[int(rng.integers(len(OPS)))]
  if op == "synonym":
    words = synonym_replacement(words, rng, n=n_of(alpha_sr), synonyms=synonyms)
  elif op == "insert":
    words = random_insertion(words, rng, n=n_of(alpha_ri), synonyms=synonyms)
  elif op == "swap":
    words = random_swap(words, rng, n=n_of(alpha_rs))
  else:
    words = random_deletion(words, rng, p=p_rd)
  return " ".join(words)


def eda_batch(texts: Sequence[str], rng: np.random.Generator, *,
              synonyms: Mapping[str, Sequence[str]], **eda_kwargs) -> list[str]:
  """`eda` on every caption with one generator (deterministic for a seeded `rng`)."""
  return [eda(t, rng, synonyms=synonyms, **eda_kwargs) for t in texts]


def eda_tokens(tokens: np.ndarray, rng: np.random.Generator, *, tokenizer: Tokenizer,
               synonyms: Mapping[str, Sequence[str]], **eda_kwargs) -> np.ndarray:
  """EDA on token-id rows (decode, augment, re-encode): (N, L) int32 -> (N, L) int32."""
  texts = [tokenizer.decode(row) for row in np.asarray(tokens)]
  return tokenizer.encode_batch(eda_batch(texts, rng, synonyms=synonyms, **eda_kwargs))
