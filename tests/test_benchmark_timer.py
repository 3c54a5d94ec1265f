"""The benchmarks' timer (benchmarks/interleave.py): how often and in which order it calls."""

import importlib.util
import os

import pytest

from tests.conftest import REPO

# Loaded from its file: benchmarks/ is not a package, and putting it on sys.path would let its
# script names (conv, clip, ...) shadow other modules for the rest of the worker's tests.
_SPEC = importlib.util.spec_from_file_location(
    "interleave", os.path.join(REPO, "benchmarks", "interleave.py"))
interleave = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(interleave)


def test_each_visit_warms_then_times_in_a_fresh_order_per_round():
  calls = []
  fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
  seconds = interleave.time_interleaved(fns, rounds=6, iters=3, warm=2, seed=1)
  assert set(seconds) == set("abcd") and all(s >= 0 for s in seconds.values())
  assert len(calls) == 6 * 4 * (2 + 3)
  visits = [calls[i] for i in range(0, len(calls), 5)]
  for i in range(0, len(calls), 5):  # one visit: 2 warm + 3 timed calls of one function
    assert calls[i:i + 5] == [calls[i]] * 5
  rounds = [tuple(visits[r * 4:(r + 1) * 4]) for r in range(6)]
  assert all(sorted(r) == list("abcd") for r in rounds)
  assert len(set(rounds)) > 1  # the order is drawn afresh each round


def test_medians_and_bad_arguments(monkeypatch):
  clock = iter(float(t) for t in [0, 1, 10, 13, 20, 22])  # three timed visits: 1, 3, 2 s
  monkeypatch.setattr(interleave.time, "perf_counter", lambda: next(clock))
  assert interleave.time_interleaved({"f": lambda: None}, rounds=3, warm=0) == {"f": 2.0}
  for bad in ({"rounds": 0}, {"rounds": 1, "iters": 0}, {"rounds": 1, "warm": -1}):
    with pytest.raises(ValueError, match="rounds="):
      interleave.time_interleaved({"f": lambda: None}, **bad)
