"""The embedded digits read without importing scikit-learn equal load_digits' arrays bitwise,
through the CSV and through the fallback."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from robustdata.data import embedded


@pytest.mark.parametrize("csv", [True, False], ids=["csv", "fallback"])
def test_digits_equal_load_digits(csv, monkeypatch):
  embedded._read.cache_clear()  # pylint: disable=protected-access
  if not csv:  # another scikit-learn layout: the file is not where this module looks
    monkeypatch.setattr(embedded.os.path, "isfile", lambda path: False)
  try:
    got, want = embedded.sklearn_digits(), load_digits()
  finally:
    embedded._read.cache_clear()  # pylint: disable=protected-access
  for a, b in ((got.images, want.images), (got.target, want.target)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
  got.images[0, 0, 0] = -1  # callers get their own copies
  assert embedded.sklearn_digits().images[0, 0, 0] == want.images[0, 0, 0]
