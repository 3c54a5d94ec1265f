"""Label noise and subset_size as a train-split transform (robustdata/data/label_noise.py):
exact flip counts, symmetric noise uniform over the other classes (chi-square), asymmetric noise
along a derangement, determinism, the subset drawn before the noise, every source, the train
metrics on clean vs flipped rows, and clear errors for bad fields."""

from __future__ import annotations

import decimal
import math

import ml_collections
import numpy as np
import pytest
from scipy import stats

from robustdata import validation
from robustdata.data import label_noise, sources
from robustdata.evals import classification
from robustdata.registry import ConfigError

C = 10


def _round(x: float) -> int:
  """round(x), halves up (Python's round() takes halves to even)."""
  return int(decimal.Decimal(repr(x)).quantize(decimal.Decimal(1), decimal.ROUND_HALF_UP))


def test_flip_count_is_round_rn():
  for rate, n, want in ((0.4, 1257, 503), (0.5, 1257, 629), (0.2, 1257, 251), (0.3, 10, 3),
                        (0.25, 10, 3), (0.0, 1257, 0), (0.1, 4, 0)):
    assert label_noise.flip_count(rate, n) == want == _round(rate * n), (rate, n)


def _labels(n: int = 20_000, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, C, size=n).astype(np.int32)


def _load(name: str = "digits", **fields):
  extra = {"n_train": 2000, "n_val": 100, "n_test": 100} if name == "pde_synthetic" else {}
  return sources.load(ml_collections.ConfigDict({"name": name, **extra, **fields}))


def test_symmetric_flips_an_exact_count_never_to_the_true_class_uniformly():
  y = _labels()
  noisy, flipped, perm = label_noise.flip_labels(y, C, rate=0.4, kind="symmetric",
                                                 rng=np.random.default_rng(1))
  assert perm is None and noisy.dtype == y.dtype
  assert flipped.sum() == _round(0.4 * len(y)) == 8000
  np.testing.assert_array_equal(noisy[~flipped], y[~flipped])
  assert np.all(noisy[flipped] != y[flipped])
  # The rate within each class is r up to sampling error (hypergeometric, <= binomial spread).
  for c in range(C):
    sel = y == c
    assert abs(flipped[sel].mean() - 0.4) < 4 * math.sqrt(0.4 * 0.6 / sel.sum())
  # Given its true class, a flipped label is uniform over the C - 1 others: a chi-square test
  # of the C x (C - 1) table of (true, new) counts against equal cells.
  table = np.zeros((C, C), int)
  np.add.at(table, (y[flipped], noisy[flipped]), 1)
  assert np.all(np.diag(table) == 0)
  off = table[~np.eye(C, dtype=bool)].reshape(C, C - 1)
  expected = off.sum(1, keepdims=True) / (C - 1)
  chi2 = float(((off - expected) ** 2 / expected).sum())
  assert stats.chi2.sf(chi2, df=C * (C - 2)) > 1e-3, chi2


def test_asymmetric_follows_a_derangement():
  y = _labels()
  noisy, flipped, perm = label_noise.flip_labels(y, C, rate=0.4, kind="asymmetric",
                                                 rng=np.random.default_rng(2))
  assert sorted(perm) == list(range(C)) and np.all(perm != np.arange(C))
  assert flipped.sum() == 8000
  np.testing.assert_array_equal(noisy[flipped], perm[y[flipped]])
  np.testing.assert_array_equal(noisy[~flipped], y[~flipped])
  # Derangements are drawn uniformly: the two of 3 classes about equally often.
  firsts = [label_noise.derangement(3, np.random.default_rng(s))[0] for s in range(2000)]
  assert set(firsts) == {1, 2} and abs(np.mean(np.array(firsts) == 1) - 0.5) < 0.05


def test_same_seed_same_flips_other_seed_other_flips():
  y = _labels(5000)
  draw = lambda s: label_noise.flip_labels(y, C, rate=0.3, kind="symmetric",
                                           rng=np.random.default_rng(s))
  a, b, c = draw(7), draw(7), draw(8)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1], c[1])
  for name in ("digits", "pde_synthetic"):
    one, two = _load(name, label_noise=0.3), _load(name, label_noise=0.3)
    np.testing.assert_array_equal(one.train.y, two.train.y)
    other = _load(name, label_noise=0.3, split_seed=1)
    assert not np.array_equal(one.train.extras["label_flipped"],
                              other.train.extras["label_flipped"])


@pytest.mark.parametrize("name", ["digits", "pde_synthetic", "spuco_digits"])
@pytest.mark.parametrize("kind", ["symmetric", "asymmetric"])
def test_every_source_records_its_flips(name, kind):
  """The generic path (pde_synthetic) and the sources applying the kernel themselves."""
  clean, noisy = _load(name), _load(name, label_noise=0.4, label_noise_kind=kind)
  train = noisy.train
  flipped = train.extras["label_flipped"]
  assert flipped.dtype == bool and flipped.sum() == _round(0.4 * len(train))
  np.testing.assert_array_equal(train.extras["clean_y"], clean.train.y)
  np.testing.assert_array_equal(train.y != clean.train.y, flipped)
  np.testing.assert_array_equal(train.x, clean.train.x)
  for split in ("val", "test"):  # untouched
    np.testing.assert_array_equal(noisy.splits()[split].y, clean.splits()[split].y)
    assert "label_flipped" not in noisy.splits()[split].extras
  if name != "spuco_digits":  # spuco_digits records its own info fields
    assert noisy.info["flipped_labels"] == flipped.sum()
    assert noisy.info["label_noise_kind"] == kind
  if kind == "asymmetric" and name != "spuco_digits":
    perm = np.asarray(noisy.info["label_noise_permutation"])
    np.testing.assert_array_equal(train.y[flipped], perm[clean.train.y[flipped]])
  if name == "spuco_digits":  # groups follow the noisy labels, as SpuCo forms them
    k = noisy.num_classes
    np.testing.assert_array_equal(train.groups, train.y * k + train.spurious)


@pytest.mark.parametrize("name", ["digits", "pde_synthetic", "spuco_digits"])
def test_subset_is_drawn_before_the_noise(name):
  full = _load(name)
  n = len(full.train)
  small = _load(name, subset_size=0.5)
  noisy = _load(name, subset_size=0.5, label_noise=0.4)
  assert len(small.train) == len(noisy.train) == round(0.5 * n)
  # The same examples whatever the noise: the subset is drawn first, from its own stream.
  np.testing.assert_array_equal(small.train.ids, noisy.train.ids)
  rows = label_noise.subset_rows(n, 0.5, np.random.default_rng([0, label_noise.SUBSET_STREAM]))
  np.testing.assert_array_equal(small.train.ids, full.train.ids[rows])
  np.testing.assert_array_equal(noisy.train.extras["clean_y"], small.train.y)
  assert noisy.train.extras["label_flipped"].sum() == _round(0.4 * len(small.train))
  np.testing.assert_array_equal(small.test.y, full.test.y)


def test_digits_subset_comes_before_the_copies():
  d = _load("digits", subset_size=0.25, train_copies=2, label_noise=0.2)
  n = round(0.25 * len(_load("digits").train))
  assert len(d.train) == 3 * n
  np.testing.assert_array_equal(d.train.extras["clean_y"], np.tile(d.train.extras["clean_y"][:n],
                                                                   3))
  assert d.train.extras["label_flipped"].sum() == _round(0.2 * 3 * n)


def test_no_noise_leaves_the_data_alone():
  base = _load("pde_synthetic")
  same = _load("pde_synthetic", label_noise=0.0, subset_size=1.0, label_noise_kind="asymmetric")
  np.testing.assert_array_equal(base.train.y, same.train.y)
  assert "label_flipped" not in same.train.extras and "clean_y" not in same.train.extras


def test_label_noise_metrics_match_a_loop():
  rng = np.random.default_rng(3)
  clean = rng.integers(0, C, 300)
  y, flipped, _ = label_noise.flip_labels(clean, C, rate=0.3, rng=rng)
  pred = np.where(rng.random(300) < 0.5, y, np.where(rng.random(300) < 0.5, clean,
                                                     rng.integers(0, C, 300)))
  got = classification.label_noise_metrics(pred, y, clean, flipped)
  clean_rows = [i for i in range(300) if not flipped[i]]
  noisy_rows = [i for i in range(300) if flipped[i]]
  assert got["accuracy_clean"] == sum(pred[i] == y[i] for i in clean_rows) / len(clean_rows)
  assert got["accuracy_noisy"] == sum(pred[i] == y[i] for i in noisy_rows) / len(noisy_rows)
  assert got["noisy_true_accuracy"] == (sum(pred[i] == clean[i] for i in noisy_rows)
                                        / len(noisy_rows))
  assert got["noisy_count"] == len(noisy_rows) == 90


@pytest.mark.parametrize("field, value, message", [
    ("label_noise_kind", "uniform", "config.data.label_noise_kind='uniform' is not known; "
     "allowed: ['symmetric', 'asymmetric']"),
    ("label_noise", 1.0, "config.data.label_noise=1.0 is out of range; allowed: a number in "
     "[0, 1)"),
    ("label_noise", -0.1, "config.data.label_noise=-0.1 is out of range"),
    ("label_noise", "0.4", "config.data.label_noise='0.4' is not a finite number; allowed: a "
     "number in [0, 1)"),
    ("subset_size", 0.0, "config.data.subset_size=0.0 is out of range; allowed: a number in "
     "(0, 1]"),
    ("subset_size", 1.5, "config.data.subset_size=1.5 is out of range"),
])
@pytest.mark.parametrize("name", ["digits", "pde_synthetic", "spuco_digits"])
def test_bad_fields_are_clear_errors(name, field, value, message):
  with pytest.raises(ConfigError) as e:
    _load(name, **{field: value})
  assert message in str(e.value)


def test_validation_rules_name_the_fields():
  config = ml_collections.ConfigDict({"data": {"label_noise": 1.2, "label_noise_kind": "sym",
                                               "subset_size": 0.0}})
  errors = "\n".join(validation.range_errors(config))
  assert "config.data.label_noise=1.2 is out of range; allowed: a finite number in [0.0, 1.0)" \
      in errors
  assert ("config.data.label_noise_kind='sym' is not known; allowed: ['symmetric', "
          "'asymmetric']") in errors
  assert "config.data.subset_size=0.0 is out of range; allowed: a finite number in (0.0, 1.0]" \
      in errors
