"""Bullseye Polytope and Hidden Trigger Backdoor crafting sharded over 8 fake CPU devices (poison
counts that do not divide by 8, so padded rows are masked) equal the single-device crafting;
the masked greedy pairing equals a brute-force greedy over the real columns."""

import textwrap

import numpy as np

from robustdata.poisoning import hidden_trigger as htb
from tests.conftest import run_python

_CODE = textwrap.dedent("""
    import jax
    import numpy as np
    from robustdata.poisoning import bullseye, hidden_trigger as htb, supervised_triggers as st
    from robustdata.train import sharding as sharding_lib
    from tests.poisoning import tiny_models as tm

    assert jax.device_count() == 8
    mesh = sharding_lib.make_mesh()
    eps = 0.1
    seen = {}

    def spying(features_fn):
      def fn(v, x):
        jax.debug.inspect_array_sharding(
            x, callback=lambda s, shape=x.shape: seen.setdefault(shape, s.shard_shape(shape)))
        return features_fn(v, x)
      return fn

    def check(delta, x_base, single):
      np.testing.assert_allclose(delta, single, rtol=0, atol=1e-5)
      assert delta.shape == x_base.shape and np.abs(single).max() > 0.5 * eps
      assert np.all(np.abs(delta) <= eps + 1e-6)
      assert np.all(x_base + delta >= -1e-6) and np.all(x_base + delta <= 1 + 1e-6)

    # Bullseye: two substitutes, 12 poisons (16 rows on 8 devices), two targets.
    subs = [(v, spying(f)) for v, f in (tm.make(s, hidden=8)[1::2] for s in (3, 4))]
    x_b, x_t = tm.images(5, 12), tm.images(6, 2)
    kw = dict(eps=eps, lr=0.01, iterations=25)
    single, l_single = bullseye.craft_bullseye(subs, x_b, x_t, **kw)
    delta, l_mesh = bullseye.craft_bullseye(subs, x_b, x_t, mesh=mesh, **kw)
    check(delta, x_b, single)
    np.testing.assert_allclose(l_mesh, l_single, rtol=1e-5)
    assert l_single[-1] < 0.9 * l_single[0]
    assert seen[(16, 4, 4, 1)] == (2, 4, 4, 1), seen  # the poisons are split over the devices

    # HTB: 5 poisons (8 rows on 8 devices, more than the 6 patched images), no early stop.
    _, v, _, features_fn = tm.make(2, hidden=8)
    trig = st.make_trigger("random", 2, 1, seed=0)
    x_b = tm.images(7, 5)
    x_p = st.stamp_trigger(tm.images(8, 6), trig, np.array([1, 1]))
    kw = dict(eps=eps, lr=0.05, iterations=25, loss_threshold=0.0)
    single, l_single = htb.craft_hidden_trigger(v, spying(features_fn), x_b, x_p, **kw)
    delta, l_mesh = htb.craft_hidden_trigger(v, spying(features_fn), x_b, x_p, mesh=mesh, **kw)
    check(delta, x_b, single)
    np.testing.assert_allclose(l_mesh, l_single, rtol=1e-5)
    assert len(l_single) == 25 and l_single[-1] < 0.9 * l_single[0]
    assert seen[(8, 4, 4, 1)] == (1, 4, 4, 1), seen
    print("ok")
""")


def test_sharded_crafting_equals_single_device():
  assert "ok" in run_python(_CODE, devices=8, timeout=300).stdout


def _brute_greedy(d, real):
  d = np.array(d, np.float64)
  d[:, ~real] = np.inf
  pair = np.zeros(d.shape[1], np.int64)
  for _ in range(int(real.sum())):
    i, j = np.unravel_index(np.argmin(d), d.shape)  # first minimum in row-major order
    pair[j] = i
    d[i, :] = np.inf
    d[:, j] = np.inf
  return pair


def test_masked_pairing_pairs_only_the_real_columns():
  rng = np.random.default_rng(0)
  for m, n, real in ((3, 8, 3), (5, 5, 2)):
    d = rng.uniform(size=(m, n)).astype(np.float32)
    mask = (np.arange(n) < real).astype(np.float32)
    pair = np.asarray(htb.greedy_pairing(d, mask))
    np.testing.assert_array_equal(pair, _brute_greedy(d, mask > 0))
    assert len(set(pair[:real].tolist())) == real and np.all(pair[real:] == 0)
  np.testing.assert_array_equal(np.asarray(htb.greedy_pairing(d, np.ones(5, np.float32))),
                                np.asarray(htb.greedy_pairing(d)))
