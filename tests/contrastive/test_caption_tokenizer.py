"""Tokenizer round trip, byte fallback, truncation keeping EOT, save/load; EDA ops."""

import numpy as np

from robustdata.data import caption_augment as eda
from robustdata.data.tokenizer import EOT, PAD, SOT, Tokenizer, eot_positions, normalize_words


def test_round_trip_with_byte_fallback_and_save_load(tmp_path):
  tok = Tokenizer.build(["a red circle", "a big blue square , top left"], context_length=32)
  for text in ["A red circle", "a zebra ündër the square!", "blue , top left"]:
    row = tok.encode(text)
    assert row[0] == SOT and row.dtype == np.int32 and row.shape == (32,)
    assert tok.decode(row) == " ".join(normalize_words(text))
  assert len(tok.encode_ids("red")) == 1 and len(tok.encode_ids("zebra")) == 6  # " zebra" bytes.
  tok.save(str(tmp_path))
  tok2 = Tokenizer.load(str(tmp_path))
  assert tok2.words == tok.words and tok2.context_length == 32
  np.testing.assert_array_equal(tok2.encode_batch(["a red zebra"]), tok.encode_batch(["a red zebra"]))


def test_truncation_keeps_end_token():
  tok = Tokenizer.build(["one two three four five six seven eight"], context_length=5)
  row = tok.encode("one two three four five six seven eight")
  np.testing.assert_array_equal(row[[0, -1]], [SOT, EOT])
  assert tok.decode(row) == "one two three"
  short = tok.encode("one")
  np.testing.assert_array_equal(short, [SOT, tok.encode_ids("one")[0], EOT, PAD, PAD])
  np.testing.assert_array_equal(eot_positions(np.stack([row, short])), [4, 2])


def test_eda_ops_are_seeded_and_keep_vocabulary():
  syn = {"red": ["crimson"], "circle": ["disc"]}
  words = "a small red circle in the top left".split()
  rng = np.random.default_rng(0)
  assert eda.synonym_replacement(words, rng, n=2, synonyms=syn) == \
      "a small crimson disc in the top left".split()
  ins = eda.random_insertion(words, rng, n=1, synonyms=syn)
  assert len(ins) == len(words) + 1 and ({"crimson", "disc"} & set(ins))
  sw = eda.random_swap(words, rng, n=1)
  assert sorted(sw) == sorted(words) and sum(a != b for a, b in zip(sw, words)) == 2
  de = eda.random_deletion(words, rng, p=0.5)
  assert 1 <= len(de) <= len(words) and all(w in words for w in de)
  out1 = eda.eda_batch(["a red circle"] * 20, np.random.default_rng(3), synonyms=syn)
  out2 = eda.eda_batch(["a red circle"] * 20, np.random.default_rng(3), synonyms=syn)
  assert out1 == out2 and len(set(out1)) > 1
  tok = Tokenizer.build(["a red circle crimson disc"], context_length=8)
  aug = eda.eda_tokens(tok.encode_batch(["a red circle"] * 4), np.random.default_rng(0),
                       tokenizer=tok, synonyms=syn)
  assert aug.shape == (4, 8) and np.all(aug[:, 0] == SOT)
