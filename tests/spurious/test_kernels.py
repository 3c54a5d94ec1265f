"""Method kernels: group sampling, GroupDRO, JTT, PDE schedule and DFR."""

import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.spurious import dfr, groupdro, groups as gu, jtt, pde


def test_group_up_and_down_sampling():
  groups = np.array([0] * 10 + [1] * 3 + [3] * 4)
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(gu.group_counts(groups, num_groups=4), [10, 3, 0, 4])
  up = gu.upsample_indices(groups, num_groups=4, rng=rng)
  np.testing.assert_array_equal(np.bincount(groups[up], minlength=4), [10, 10, 0, 10])
  # Each group's examples appear floor or ceil(10 / n) times.
  reps = np.bincount(up, minlength=len(groups))
  assert set(reps[groups == 1]) <= {3, 4} and set(reps[groups == 3]) <= {2, 3}
  down = gu.downsample_indices(groups, num_groups=4, rng=rng)
  np.testing.assert_array_equal(np.bincount(groups[down], minlength=4), [3, 3, 0, 3])
  assert len(set(down.tolist())) == len(down)


def test_balanced_batches_equalise_groups():
  groups = np.array([0] * 900 + [1] * 90 + [2] * 10)
  p = gu.balanced_sampling_probabilities(groups, num_labels=3)
  np.testing.assert_allclose(np.bincount(groups, weights=p), [1 / 3] * 3)
  batches = gu.balanced_batches(groups, num_labels=3, batch_size=60, num_batches=200,
                                rng=np.random.default_rng(0))
  assert batches.shape == (200, 60)
  frac = np.bincount(groups[batches.ravel()], minlength=3) / batches.size
  np.testing.assert_allclose(frac, [1 / 3] * 3, atol=0.02)


def test_groupdro_update_against_hand_computation():
  q = jnp.array([0.25, 0.25, 0.25, 0.25])
  losses = jnp.array([1.0, 3.0, 2.0, 0.5, 9.0])
  groups = jnp.array([0, 0, 1, 3, 2])
  mask = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])  # the last row is padding
  eta = 0.1
  new_q, coef, group_loss = groupdro.groupdro_update(q, losses, groups, mask, step_size=eta)
  # Hand computation: group means (2, 2, absent, 0.5).
  raw = np.array([0.25 * np.exp(0.2), 0.25 * np.exp(0.2), 0.25, 0.25 * np.exp(0.05)])
  expected_q = raw / raw.sum()
  np.testing.assert_allclose(new_q, expected_q, rtol=1e-6)
  np.testing.assert_allclose(group_loss, [2.0, 2.0, 0.0, 0.5], rtol=1e-6)
  robust = expected_q[0] * 2.0 + expected_q[1] * 2.0 + expected_q[3] * 0.5
  b = 4.0
  assert float(jnp.sum(coef * losses) / b) == pytest.approx(robust, rel=1e-6)
  np.testing.assert_allclose(coef, [expected_q[0] * 4 / 2, expected_q[0] * 4 / 2,
                                    expected_q[1] * 4, expected_q[3] * 4, 0.0], rtol=1e-6)
  # Repeated updates follow the exponentiated rule cumulatively.
  q2, _, _ = groupdro.groupdro_update(new_q, losses, groups, mask, step_size=eta)
  raw2 = expected_q * np.exp(eta * np.array([2.0, 2.0, 0.0, 0.5]))
  np.testing.assert_allclose(q2, raw2 / raw2.sum(), rtol=1e-6)


def test_jtt_error_set_and_upweighting():
  preds = np.array([0, 1, 1, 0, 2])
  labels = np.array([0, 0, 1, 1, 2])
  errors = jtt.error_set(preds, labels)
  np.testing.assert_array_equal(errors, [1, 3])
  np.testing.assert_array_equal(jtt.inferred_groups(preds, labels), [0, 1, 0, 1, 0])
  np.testing.assert_array_equal(jtt.upweight_weights(5, errors, upweight=6), [1, 6, 1, 6, 1])
  idx = jtt.upsample_indices(5, errors, upweight=6, rng=np.random.default_rng(0))
  np.testing.assert_array_equal(np.bincount(idx, minlength=5), [1, 6, 1, 6, 1])


def test_pde_warmup_on_waterbirds_group_sizes():
  # Waterbirds train: groups (y, place) 3498 / 184 / 56 / 1057 -> 4 x 56 = 224 warm-up examples.
  sizes = [3498, 184, 56, 1057]
  groups = np.repeat(np.arange(4), sizes)
  labels = groups // 2
  warm = pde.warmup_indices(labels, groups, rng=np.random.default_rng(0))
  np.testing.assert_array_equal(np.bincount(groups[warm], minlength=4), [56] * 4)
  assert len(np.unique(warm)) == 224
  capped = pde.warmup_indices(labels, groups, rng=np.random.default_rng(0), subsample_cap=150)
  np.testing.assert_array_equal(np.bincount(groups[capped], minlength=4), [150, 150, 56, 150])


def test_pde_expansion_adds_exactly_add_num_without_replacement():
  n, add_num = 1000, 37
  rng = np.random.default_rng(0)
  milestones = pde.expansion_milestones(add_start=140, add_interval=10, num_epochs=300)
  np.testing.assert_array_equal(milestones, np.arange(140, 300, 10))
  current = np.arange(0, 1000, 50)  # 20 warm-up examples
  for _ in range(len(milestones)):
    before = len(current)
    current = pde.expand_indices(current, n, add_num=add_num, rng=rng)
    assert len(current) == before + add_num
    assert len(np.unique(current)) == len(current)  # never a repeat
  # Running out: the rest is added once.
  almost = np.arange(990)
  np.testing.assert_array_equal(
      pde.expand_indices(almost, n, add_num=add_num, rng=rng), np.arange(1000))
  # The reference quirk can add an example twice.
  quirk = pde.expand_indices(np.arange(900), n, add_num=90, rng=np.random.default_rng(1),
                             with_replacement=True)
  assert len(quirk) == 990 and len(np.unique(quirk)) < 990
  assert pde.auto_add_num(101, 4) == 26


def test_pde_uniform_add_and_same_across_class():
  groups = np.repeat(np.arange(4), [500, 40, 30, 430])
  added = pde.expand_indices(np.zeros(0, np.int64), len(groups), add_num=40,
                             rng=np.random.default_rng(0), uniform_add=True, groups=groups,
                             num_groups=4)
  np.testing.assert_array_equal(np.bincount(groups[added], minlength=4), [10] * 4)
  attribute = groups % 2
  rebuilt = pde.same_across_class_indices(groups, attribute, rng=np.random.default_rng(0))
  np.testing.assert_array_equal(np.bincount(groups[rebuilt], minlength=4), [30, 40, 30, 40])


def test_dfr_recovers_a_planted_core_direction():
  rng = np.random.default_rng(0)
  sizes = [800, 40, 40, 800]  # groups (y, a); minority groups 1 and 2
  groups = np.repeat(np.arange(4), sizes)
  y, a = groups // 2, groups % 2
  n, d = len(groups), 12
  feats = rng.standard_normal((n, d))
  feats[:, 0] += 1.5 * (2 * y - 1)  # core direction
  feats[:, 1] += 3.0 * (2 * a - 1)  # spurious direction, stronger
  head = dfr.fit_dfr(feats, y, groups, num_groups=4, rng=np.random.default_rng(1), num_models=5)
  w = head.coef[0] / head.scale
  assert abs(w[0]) > 3 * abs(w[1]) and abs(w[0]) > 3 * np.abs(w[2:]).max()
  assert set(head.tuning_worst_group) == set(dfr.C_GRID) and head.c in dfr.C_GRID
  test = rng.standard_normal((4000, d))
  ty = rng.integers(0, 2, 4000)
  ta = rng.integers(0, 2, 4000)
  test[:, 0] += 1.5 * (2 * ty - 1)
  test[:, 1] += 3.0 * (2 * ta - 1)
  wga = dfr.dfr_worst_group_accuracy(head, test, ty, ty * 2 + ta, num_groups=4)
  assert wga > 0.85
