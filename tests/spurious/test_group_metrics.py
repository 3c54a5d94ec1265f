"""Group metrics against direct loops, and the per-group bar plot."""

import numpy as np
import pytest

from robustdata.evals import groups as ev


def _data(seed=0, n=500, num_groups=4):
  rng = np.random.default_rng(seed)
  groups = rng.integers(0, num_groups - 1, n)  # the last group is absent
  labels = groups // 2
  preds = np.where(rng.random(n) < 0.3 + 0.15 * groups, 1 - labels, labels)
  return preds, labels, groups


def test_worst_group_and_weighted_average_match_a_direct_computation():
  preds, labels, groups = _data()
  per_group = ev.group_accuracy(preds, labels, groups, num_groups=4)
  direct = {}
  for g in range(3):
    sel = [i for i in range(len(groups)) if groups[i] == g]
    direct[g] = sum(preds[i] == labels[i] for i in sel) / len(sel)
  assert np.isnan(per_group[3])
  for g in range(3):
    assert per_group[g] == pytest.approx(direct[g])
  g, acc = ev.worst_group_accuracy(per_group)
  assert acc == pytest.approx(min(direct.values())) and direct[g] == acc
  train_counts = np.array([700, 50, 30, 220])
  expected = sum(train_counts[g] * direct[g] for g in range(3)) / train_counts[:3].sum()
  assert ev.weighted_average_accuracy(per_group, train_counts) == pytest.approx(expected)
  spurious = groups % 2
  assert ev.spurious_attribute_accuracy(preds, spurious) == pytest.approx(
      np.mean([p == s for p, s in zip(preds, spurious)]))
  report = ev.group_report(preds, labels, groups, num_groups=4, train_group_counts=train_counts,
                           group_names=["a", "b", "c", "d"], spurious=spurious)
  assert set(report["group_accuracy"]) == {"a", "b", "c"}
  assert report["worst_group_accuracy"] == pytest.approx(acc)


def test_plot_writes_png(tmp_path):
  pytest.importorskip("matplotlib")
  path = ev.plot_group_accuracy(np.array([0.9, 0.4, np.nan, 0.8]), str(tmp_path / "g" / "acc.png"),
                                group_names=["a", "b", "c", "d"])
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
