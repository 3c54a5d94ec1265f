"""EPIC (robustdata/poisoning/epic.py): the isolated points against a brute-force float64
facility-location greedy, far points dropped and dense clusters kept, the policy's schedule and
bitwise resume on a fake probe, the victim's `epic` variant, bad input named."""

from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest

from robustdata import config_lib, validation
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext, to_json
from robustdata.poisoning import epic
from robustdata.registry import ConfigError

C, BLOB = 3, 15  # classes; points per dense blob (two blobs per class)


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(x, y, far): per class two tight blobs of BLOB points and two points far from everyone."""
  rng = np.random.default_rng(seed)
  xs, ys, far = [], [], []
  for c in range(C):
    centre = np.zeros(4)
    centre[c] = 3.0
    for sign in (1.0, -1.0):
      xs.append(centre + sign * np.eye(4)[3] + 0.05 * rng.normal(size=(BLOB, 4)))
    outliers = centre + np.array([[8.0, 0, 0, 2.0], [0, -7.0, 3.0, 0]]) + 0.01 * c
    start = sum(len(a) for a in xs)
    far += [start, start + 1]
    xs.append(outliers)
    ys += [c] * (2 * BLOB + 2)
  return np.concatenate(xs), np.asarray(ys), np.asarray(far)


def _brute_force(x: np.ndarray, y: np.ndarray, fraction: float, threshold: int) -> np.ndarray:
  """The textbook greedy on F(S) = sum_i max_{j in S} (M - d_ij) per class (proportional
  budgets ceil(n_c B / n)), every gain recomputed, ties to the lowest index; clusters by
  nearest medoid (ties to the earlier pick); members of clusters of <= threshold dropped."""
  n = len(x)
  budget = max(1, int(round(fraction * n)))
  drop = []
  for c in np.unique(y):
    idx = np.flatnonzero(y == c)
    xc = x[idx].astype(np.float64)
    k = -(-len(idx) * budget // n)
    d = np.array([[np.sqrt(np.sum((a - b) ** 2)) for b in xc] for a in xc])
    s = d.max() - d
    chosen, cover = [], np.zeros(len(idx))
    for _ in range(k):
      best, best_gain = -1, -np.inf
      for j in range(len(idx)):
        if j in chosen:
          continue
        gain = np.sum(np.maximum(cover, s[:, j])) - np.sum(cover)
        if gain > best_gain + 1e-9:
          best, best_gain = j, gain
      chosen.append(best)
      cover = np.maximum(cover, s[:, best])
    assign = np.argmin(d[:, chosen], axis=1)
    sizes = np.bincount(assign, minlength=k)
    drop += list(idx[sizes[assign] <= threshold])
  return np.sort(np.asarray(drop, np.int64))


def test_far_points_dropped_dense_blobs_kept():
  x, y, far = _blobs()
  # 4 medoids per class: one per blob and one per far point.
  drop = epic.isolated_points(x, y, subset_fraction=12 / len(x))
  np.testing.assert_array_equal(drop, np.sort(far))
  medoids, sizes, assign = epic.epic_clusters(x, y, subset_fraction=12 / len(x))
  assert sorted(sizes.tolist()) == [1] * 6 + [BLOB] * 6
  np.testing.assert_array_equal(np.sort(medoids[sizes == 1]), np.sort(far))
  assert np.all(y[medoids[assign]] == y)  # every example joins a medoid of its class
  # The exact jitted greedy path selects the same medoids.
  np.testing.assert_array_equal(
      epic.isolated_points(x, y, subset_fraction=12 / len(x), method="lazy_dense"), drop)


@pytest.mark.parametrize("fraction,threshold,seed", [
    (0.1, 1, 1), (0.25, 1, 2), (0.4, 1, 3), (0.25, 2, 4), (1.0, 1, 5)])
def test_isolated_points_match_brute_force(fraction, threshold, seed):
  rng = np.random.default_rng(seed)
  n = 57
  y = rng.integers(0, 3, size=n)
  x = rng.normal(size=(n, 3)) + 2.0 * y[:, None] + 6.0 * (rng.random((n, 1)) < 0.1)
  got = epic.isolated_points(x.astype(np.float32), y, subset_fraction=fraction,
                             cluster_threshold=threshold)
  np.testing.assert_array_equal(got, _brute_force(x.astype(np.float32), y, fraction, threshold))
  assert (len(got) > 0) == (fraction > 0.1)  # 2 medoids per class at 0.1 leave no singleton
  if fraction == 1.0:  # every point its own medoid: all isolated
    np.testing.assert_array_equal(got, np.arange(n))


def test_assign_to_medoids_brute_force():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(40, 2)), np.arange(40) % 2
  medoids = np.array([3, 0, 8, 5, 1])
  got = epic.assign_to_medoids(x, y, medoids)
  for i in range(len(x)):
    same = [p for p, m in enumerate(medoids) if y[m] == y[i]]
    assert got[i] == min(same, key=lambda p: (np.linalg.norm(x[i] - x[medoids[p]]), p))


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, float("nan"), True, "0.2"])
def test_bad_fraction_names_the_field(value):
  x, y, _ = _blobs()
  with pytest.raises(ConfigError, match=r"subset_fraction=.*\(0, 1\]"):
    epic.isolated_points(x, y, subset_fraction=value)
  with pytest.raises(ConfigError, match=r"config\.policy\.subset_fraction="):
    _policy(x, y, subset_fraction=value)
  with pytest.raises(ConfigError, match="cluster_threshold=0"):
    epic.isolated_points(x, y, subset_fraction=0.2, cluster_threshold=0)
  with pytest.raises(ConfigError, match=r"config\.policy\.epic_every=0"):
    _policy(x, y, epic_every=0)


def test_range_rules_name_the_fields():
  for field, value in (("subset_fraction", 1.5), ("epic_every", 0), ("epic_stop_epoch", -2),
                       ("cluster_threshold", 0)):
    c = config_lib.base_config()
    c.model.name = "cnn"
    c.policy.name = "epic"
    c.policy[field] = value
    errors = validation.range_errors(config_lib.with_defaults(c))
    assert len(errors) == 1 and errors[0].startswith(f"config.policy.{field}="), errors


def _policy(x, y, **fields):
  train = Dataset(x=x.astype(np.float32), y=y, ids=np.arange(len(y)))
  config = ml_collections.ConfigDict({"policy": {"name": "epic", **fields}})
  return epic.Epic(config, train, batch_size=8, seed=3, num_classes=C)


def _serve(policy, x, epochs, stop_at=None):
  """Serves the epochs as the loop does (the fake probe returns x as proxies, drifting with
  the epoch); returns the plans by epoch, stopping after `stop_at` = (epoch, batches)."""
  plans = {}
  for epoch in epochs:
    proxies = lambda kind, idx, e=epoch: (x[idx] * (1.0 + 0.01 * e)).astype(np.float32)
    ctx = PolicyContext(step=0, epoch=epoch, state=None, probe=proxies)
    steps = policy.steps_for(ctx)
    plans[epoch] = [b.copy() for b in policy.plan_indices]
    for _ in range(policy.position, steps):
      if stop_at == (epoch, policy.position):
        return plans
      policy.next_batch(ctx)
  return plans


def test_policy_schedule_and_bitwise_resume():
  x, y, far = _blobs()
  fields = dict(subset_fraction=12 / len(x), epic_start_epoch=1, epic_every=2)
  policy = _policy(x, y, **fields)
  plans = _serve(policy, x, range(5))
  n = len(x)
  np.testing.assert_array_equal(np.sort(np.concatenate(plans[0])), np.arange(n))
  kept = np.setdiff1d(np.arange(n), far)
  for epoch in (1, 2, 3, 4):  # far points out from the first selection on, everyone else in
    np.testing.assert_array_equal(np.sort(np.concatenate(plans[epoch])), kept)
  assert not np.array_equal(np.concatenate(plans[1]), np.concatenate(plans[2]))  # reshuffled
  results = policy.results()
  assert (results["epic_dropped"], results["epic_excluded"], results["epic_selections"]) == (
      len(far), len(far), 2)  # epochs 1 and 3
  # Killed mid-epoch 3: a fresh policy loaded from the JSON state serves the same batches.
  first = _policy(x, y, **fields)
  _serve(first, x, range(4), stop_at=(3, 2))
  state = json.loads(json.dumps(to_json(first.state_dict())))
  resumed = _policy(x, y, **fields)
  resumed.load_state_dict(state)
  tail = _serve(resumed, x, range(3, 5))
  for epoch in (3, 4):
    for a, b in zip(tail[epoch], plans[epoch]):
      np.testing.assert_array_equal(a, b)
  assert resumed.results()["epic_selections"] == 2
  assert resumed.finalize(type("Ctx", (), {"config": ml_collections.ConfigDict()})()) == {}


def test_not_cumulative_replaces_the_drop_set():
  x, y, far = _blobs()
  policy = _policy(x, y, subset_fraction=12 / len(x), cumulative=False)
  _serve(policy, x, range(2))
  assert set(policy.last_dropped) == set(far) and policy.excluded.sum() == len(far)


def test_victim_epic_variant():
  from configs.friendly_noise import bp_digits, common  # pylint: disable=g-import-not-at-top
  c = config_lib.with_defaults(bp_digits.get_config("epic,trial2"))
  validation.check_ranges(c)
  assert (c.policy.name, c.policy.subset_fraction, c.policy.epic_start_epoch) == ("epic", 0.2, 1)
  assert c.name == "fn_bullseye_digits_epic_t2_s0"
  assert common.epic_section(scratch=True, fine_tune=False, smoke=False)["epic_start_epoch"] == 5
  none = bp_digits.get_config("none,trial2")
  assert none.poisons == c.poisons  # EPIC victims reuse the undefended victims' poisons
