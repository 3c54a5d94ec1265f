"""Sleeper Agent and Hidden Trigger Backdoor: triggers stamped in the right place, poison
selection against a brute-force loop, the retrain hook, greedy pairing against a brute-force
greedy, and HTB crafting lowering its loss."""

import jax
import numpy as np
import pytest

from robustdata.poisoning import gradient_matching as gm
from robustdata.poisoning import hidden_trigger as htb
from robustdata.poisoning import sleeper_agent as sa
from robustdata.poisoning import supervised_triggers as st
from robustdata.registry import ConfigError
from tests.poisoning import tiny_models as tm


def test_triggers_are_stamped_at_their_positions():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(20, 9, 7, 3)).astype(np.float32)
  trig = st.make_trigger("random", 3, 3, seed=1)
  assert trig.shape == (3, 3, 3) and trig.min() >= 0 and trig.max() <= 1
  pos = st.random_positions(20, (9, 7), 3, rng=np.random.default_rng(2))
  assert pos[:, 0].max() <= 6 and pos[:, 1].max() <= 4 and pos.min() >= 0
  out = st.stamp_trigger(x, trig, pos)
  for i in range(20):
    r, c = pos[i]
    want = x[i].copy()
    want[r:r + 3, c:c + 3] = trig
    np.testing.assert_array_equal(out[i], want)
  np.testing.assert_array_equal(sa.stamp_random(x, trig, seed=5), sa.stamp_random(x, trig, seed=5))
  np.testing.assert_array_equal(st.random_positions(20, (9, 7), 3, seed=2), pos)
  # Many draws reach every corner position.
  many = st.random_positions(2000, 6, 2, rng=np.random.default_rng(3))
  assert set(map(tuple, many)) == {(r, c) for r in range(5) for c in range(5)}
  board = st.make_trigger("checkerboard", 4, 1, seed=0)[..., 0]
  assert board[0, 0] == board[1, 1] != board[0, 1] == board[1, 0]
  # HTB: (size - patch - 5) in both axes.
  y = htb.paste_trigger(np.zeros((2, 12, 12, 3), np.float32),
                        st.make_trigger("random", 5, 3, seed=2))
  np.testing.assert_array_equal(y[:, 2:7, 2:7], np.broadcast_to(
      st.make_trigger("random", 5, 3, seed=2), (2, 5, 5, 3)))
  assert y[:, :2].sum() == 0 and y[:, 7:].sum() == 0 and y[:, :, 7:].sum() == 0
  with pytest.raises(ConfigError, match="config.attack.trigger"):
    st.make_trigger("smiley", 3, 3, seed=0)
  with pytest.raises(ConfigError, match="patch_size"):
    st.fixed_position(8, 5)


def test_selection_picks_the_largest_gradient_norms():
  _, v, logits_fn, _ = tm.make(0)
  params = tm.np_params(v)
  x = tm.images(1, 23)
  y = np.full(23, 1)
  norms = sa.gradient_norms(logits_fn, v, x, y, batch_size=8)
  brute = np.array([np.linalg.norm(tm.np_grad(params, x[i:i + 1], y[i:i + 1]))
                    for i in range(23)])
  np.testing.assert_allclose(norms, brute, rtol=1e-5)
  picked = sa.select_poisons(logits_fn, v, x, y, 5, batch_size=8)
  np.testing.assert_array_equal(picked, np.argsort(-brute)[:5])


def test_source_gradient_and_retrain_hook():
  _, v, logits_fn, _ = tm.make(1)
  trig = st.make_trigger("checkerboard", 2, 1, seed=0)
  sources = sa.stamp_random(tm.images(2, 9), trig, seed=3)
  g = sa.source_gradient(logits_fn, v, sources, 2, batch_size=4)
  np.testing.assert_allclose(tm.flat(g), tm.np_grad(tm.np_params(v), sources, np.full(9, 2)),
                             rtol=1e-5, atol=1e-7)
  x_p = tm.images(4, 6)
  calls = []

  def retrain(key, delta):
    assert delta.shape == x_p.shape
    new = tm.make(10 + len(calls))[1]
    calls.append((np.asarray(key), delta, new))
    return new

  res = sa.craft_sleeper_agent(logits_fn, v, x_p, sources, target_class=2,
                               key=jax.random.PRNGKey(0), eps=0.1, retrain=retrain,
                               retrain_every=3, iterations=10, lr=0.01, augment=False)
  assert len(calls) == 2  # after iterations 3 and 6; 9 is the last
  for k, (_, delta, new) in enumerate(calls):
    it = 3 * (k + 1)
    g_new = sa.source_gradient(logits_fn, new, sources, 2)
    want = gm.objective(logits_fn, new, g_new, x_p, delta, np.full(6, 2))
    np.testing.assert_allclose(res.losses[0, it + 1], want, rtol=1e-5)


def _brute_greedy(d):
  d = np.array(d, np.float64)
  pair = np.zeros(d.shape[1], np.int64)
  for _ in range(d.shape[1]):
    best = None
    for i in range(d.shape[0]):
      for j in range(d.shape[1]):
        if np.isfinite(d[i, j]) and (best is None or d[i, j] < d[best]):
          best = (i, j)
    pair[best[1]] = best[0]
    d[best[0], :] = np.inf
    d[:, best[1]] = np.inf
  return pair


def test_greedy_pairing_equals_brute_force():
  rng = np.random.default_rng(0)
  for m, n in ((5, 5), (7, 4), (12, 12)):
    for _ in range(3):
      d = rng.uniform(size=(m, n)).astype(np.float32)
      pair = np.asarray(htb.greedy_pairing(d))
      np.testing.assert_array_equal(pair, _brute_greedy(d))
      assert len(set(pair.tolist())) == n
  a, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
  np.testing.assert_allclose(np.asarray(htb.pairwise_distances(a.astype(np.float32),
                                                               b.astype(np.float32))),
                             np.linalg.norm(a[:, None] - b[None], axis=-1), rtol=1e-5, atol=1e-5)
  pf, tf = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
  pair = np.array([4, 0, 2, 1])
  np.testing.assert_allclose(float(htb.htb_loss(tf.astype(np.float32), pf.astype(np.float32),
                                                pair)),
                             np.sum((tf[pair] - pf) ** 2), rtol=1e-5)


def test_htb_crafting_lowers_the_loss_and_stops_early():
  _, v, _, features_fn = tm.make(2, hidden=8)
  trig = st.make_trigger("random", 2, 1, seed=0)
  x_base = tm.images(5, 6)
  x_patched = st.stamp_trigger(tm.images(6, 8), trig, np.array([1, 1]))
  eps = 0.1
  delta, losses = htb.craft_hidden_trigger(v, features_fn, x_base, x_patched, eps=eps, lr=0.05,
                                           iterations=60, loss_threshold=0.0)
  assert len(losses) == 60 and losses[-1] < 0.8 * losses[0], (losses[0], losses[-1])
  assert np.all(np.abs(delta) <= eps + 1e-6)
  assert np.all(x_base + delta >= -1e-6) and np.all(x_base + delta <= 1 + 1e-6)
  threshold = float(losses[20])
  _, early = htb.craft_hidden_trigger(v, features_fn, x_base, x_patched, eps=eps, lr=0.05,
                                      iterations=60, loss_threshold=threshold)
  stop = int(np.argmax(losses < threshold))
  assert len(early) == stop + 1 and early[-1] < threshold <= early[:-1].min()
  np.testing.assert_allclose(early, losses[:stop + 1], rtol=1e-6)
