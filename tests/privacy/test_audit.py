"""Privacy audit: the empirical epsilon lower bound from a canary never exceeds the
accountant's epsilon (one full-batch DP-SGD step on a linear model, many seeds)."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from robustdata.privacy import accounting, rules


def _clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
  lo = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
  hi = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
  return lo, hi


def test_empirical_epsilon_below_accountant():
  rng = np.random.default_rng(0)
  d, n, trials, sigma, clip, delta = 8, 16, 1000, 1.0, 1.0, 1e-5
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  canary_x = 10.0 * np.ones((1, d), np.float32)  # a large, always-clipped gradient

  def loss_fn(w, model_state, batch, rng, train=True):
    logits = batch["x"] @ w["w"]
    losses = jnp.logaddexp(0.0, logits) - batch["y"] * logits
    return losses, (model_state, logits)

  def score(include, key):
    """One DP step from w=0; the score is the update's projection on the canary direction."""
    mask = jnp.concatenate([jnp.ones(n), jnp.asarray([include], jnp.float32)])
    batch = {"x": jnp.asarray(np.concatenate([x, canary_x])),
             "y": jnp.asarray(np.concatenate([y, [0]])), "weight": jnp.ones(n + 1),
             "mask": mask, "index": jnp.arange(n + 1)}
    rule = rules.make_dp_rule(mode="dp_sgd", clip_norm=clip, noise_multiplier=sigma,
                              expected_batch_size=1.0, method="vmap")
    g, _, _ = rule(loss_fn, {"w": jnp.zeros(d)}, {}, batch, key, lambda l, b: b["weight"])
    return jnp.dot(g["w"], jnp.ones(d) / np.sqrt(d))

  keys = jax.random.split(jax.random.PRNGKey(0), 2 * trials)
  s_in = np.asarray(jax.jit(jax.vmap(lambda k: score(1.0, k)))(keys[:trials]))
  s_out = np.asarray(jax.jit(jax.vmap(lambda k: score(0.0, k)))(keys[trials:]))
  best = 0.0
  for t in np.quantile(np.concatenate([s_in, s_out]), np.linspace(0.5, 0.999, 40)):
    tpr_lo, _ = _clopper_pearson(int(np.sum(s_in > t)), trials, 0.05)
    _, fpr_hi = _clopper_pearson(int(np.sum(s_out > t)), trials, 0.05)
    if tpr_lo > delta and fpr_hi > 0:
      best = max(best, np.log((tpr_lo - delta) / fpr_hi))
  eps = accounting.epsilon(noise_multiplier=sigma, sampling_rate=1.0, steps=1, delta=delta)
  assert best > 0.3  # the audit detects the canary
  assert best <= eps, (best, eps)
