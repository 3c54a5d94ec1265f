"""CLIP / unimodal losses against float64 NumPy references (values and gradients)."""

import numpy as np
import jax
import jax.numpy as jnp

from robustdata import losses


def _unit(rng, n, d):
  x = rng.standard_normal((n, d))
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _lse(a, axis):
  m = a.max(axis=axis, keepdims=True)
  return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_clip_loss(f, g, t):
  logits = np.exp(t) * f @ g.T
  d = np.diag(logits)
  return 0.5 * (np.mean(_lse(logits, 1) - d) + np.mean(_lse(logits, 0) - d))


def np_clip_grads(f, g, t):
  """Analytic gradients of the symmetric loss w.r.t. f, g and t (float64)."""
  n = len(f)
  s = np.exp(t)
  logits = s * f @ g.T
  pr = np.exp(logits - _lse(logits, 1)[:, None])
  pc = np.exp(logits - _lse(logits, 0)[None, :])
  dl = 0.5 / n * ((pr - np.eye(n)) + (pc - np.eye(n)))
  return s * dl @ g, s * dl.T @ f, np.sum(dl * logits)


def test_clip_loss_matches_float64_reference():
  rng = np.random.default_rng(0)
  f, g = _unit(rng, 24, 16), _unit(rng, 24, 16)
  t = np.log(1 / 0.07)
  got = losses.clip_loss(jnp.asarray(f, jnp.float32), jnp.asarray(g, jnp.float32), jnp.float32(t))
  np.testing.assert_allclose(float(got), np_clip_loss(f, g, t), rtol=2e-5)
  grads = jax.grad(losses.clip_loss, argnums=(0, 1, 2))(
      jnp.asarray(f, jnp.float32), jnp.asarray(g, jnp.float32), jnp.float32(t))
  for a, b in zip(grads, np_clip_grads(f, g, t)):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-6)


def test_mask_equals_loss_on_real_rows_and_chunked_form_equal():
  rng = np.random.default_rng(1)
  f, g = _unit(rng, 16, 8).astype(np.float32), _unit(rng, 16, 8).astype(np.float32)
  mask = np.ones(16, np.float32)
  mask[11:] = 0
  t = jnp.float32(2.0)
  masked = losses.clip_loss(f, g, t, mask=jnp.asarray(mask))
  np.testing.assert_allclose(float(masked), np_clip_loss(f[:11], g[:11], 2.0), rtol=2e-5)
  for chunks in (1, 4, 8):
    np.testing.assert_allclose(float(losses.clip_loss_chunked(f, g, t, num_chunks=chunks)),
                               float(losses.clip_loss(f, g, t)), rtol=1e-6)
    np.testing.assert_allclose(
        float(losses.clip_loss_chunked(f, g, t, num_chunks=chunks, mask=jnp.asarray(mask))),
        float(masked), rtol=1e-6)
  g_full = jax.grad(losses.clip_loss)(jnp.asarray(f), jnp.asarray(g), t)
  g_chunk = jax.grad(lambda a: losses.clip_loss_chunked(a, jnp.asarray(g), t, num_chunks=4))(
      jnp.asarray(f))
  np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_full), rtol=1e-5, atol=1e-7)


def test_unimodal_and_nt_xent_match_reference():
  rng = np.random.default_rng(2)
  q, k = _unit(rng, 12, 8), _unit(rng, 12, 8)
  t = 1.3
  logits = np.exp(t) * q @ k.T
  ref = np.mean(_lse(logits, 1) - np.diag(logits))
  np.testing.assert_allclose(float(losses.unimodal_loss(q, k, jnp.float32(t))), ref, rtol=2e-5)

  z = np.concatenate([q, k]) / 0.5
  sim = z @ np.concatenate([q, k]).T
  np.fill_diagonal(sim, -np.inf)
  pos = np.concatenate([np.arange(12, 24), np.arange(12)])
  ref_nt = np.mean(_lse(sim, 1) - sim[np.arange(24), pos])
  np.testing.assert_allclose(float(losses.nt_xent(q, k, temperature=0.5)), ref_nt, rtol=2e-5)


def test_cleanclip_and_roclip_compose_and_stop_gradient():
  rng = np.random.default_rng(3)
  i, t_, ia, ta = (jnp.asarray(_unit(rng, 8, 4), jnp.float32) for _ in range(4))
  s = jnp.float32(2.0)
  loss, parts = losses.cleanclip_loss(i, t_, ia, ta, s, clip_weight=1.0, inmodal_weight=0.5)
  expect = losses.clip_loss(i, t_, s) + 0.25 * (losses.unimodal_loss(i, ia, s)
                                                + losses.unimodal_loss(t_, ta, s))
  np.testing.assert_allclose(float(loss), float(expect), rtol=1e-6)
  assert set(parts) == {"clip_loss", "inmodal_loss"}
  g_text = jax.grad(lambda m: losses.roclip_loss(i, m, s))(t_)
  assert float(jnp.abs(g_text).max()) == 0.0
