"""SafeCLIP's safe/risky split: a seeded 2-component 1-D Gaussian mixture on per-pair cosine
scores and the growing safe-fraction schedule (spec §3).

Host-side NumPy (it runs once per epoch on N scores). The EM follows sklearn's defaults used
by the reference (k-means init, `reg_covar` 1e-6, tol 1e-3 on the mean log-likelihood, at most
100 iterations), written here so that it is seeded and dependency-free.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from robustdata.registry import ConfigError


@dataclasses.dataclass(frozen=True)
class GaussianMixture1D:
  """Fitted mixture: `weights`, `means`, `variances` (2,), sorted by mean (index 1 = high)."""

  weights: np.ndarray
  means: np.ndarray
  variances: np.ndarray
  converged: bool
  num_iters: int

  def log_joint(self, x: np.ndarray) -> np.ndarray:
    """(N, 2) log weight_k + log N(x | mean_k, var_k)."""
    x = np.asarray(x, np.float64)[:, None]
    return (np.log(self.weights) - 0.5 * np.log(2 * np.pi * self.variances)
            - 0.5 * (x - self.means) ** 2 / self.variances)

  def posterior(self, x: np.ndarray) -> np.ndarray:
    """(N, 2) component responsibilities."""
    lj = self.log_joint(x)
    return np.exp(lj - np.logaddexp(lj[:, :1], lj[:, 1:]))


def _kmeans_1d(x: np.ndarray, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
  """Two-cluster 1-D k-means (k-means++ seeding) -> labels (N,)."""
  c0 = x[rng.integers(len(x))]
  d2 = (x - c0) ** 2
  c1 = x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else c0
  centers = np.array([c0, c1])
  labels = np.zeros(len(x), int)
  for _ in range(iters):
    new = np.argmin(abs(x[:, None] - centers[None, :]), axis=1)
    for k in range(2):
      if np.any(new == k):
        centers[k] = x[new == k].mean()
    if np.array_equal(new, labels):
      break
    labels = new
  return labels


def fit_gmm_1d(scores: np.ndarray, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-3,
               reg_covar: float = 1e-6) -> GaussianMixture1D:
  """EM for a 2-component 1-D Gaussian mixture, k-means initialised with `seed`."""
  x = np.asarray(scores, np.float64).ravel()
  if len(x) < 2:
    raise ConfigError(f"the safe/risky split needs at least 2 scores, got {len(x)}")
  labels = _kmeans_1d(x, np.random.default_rng(seed))
  resp = np.stack([labels == 0, labels == 1], axis=1).astype(np.float64)
  resp[:, np.argmax(resp.sum(0))] += 1e-10  # Keep an empty k-means cluster well-defined.
  prev, converged, it = -np.inf, False, 0

  def m_step(r):
    nk = r.sum(0) + 10 * np.finfo(np.float64).eps
    means = (r * x[:, None]).sum(0) / nk
    var = (r * (x[:, None] - means) ** 2).sum(0) / nk + reg_covar
    return nk / len(x), means, var

  w, mu, var = m_step(resp)
  for it in range(1, max_iter + 1):
    gm = GaussianMixture1D(w, mu, var, False, it)
    lj = gm.log_joint(x)
    norm = np.logaddexp(lj[:, 0], lj[:, 1])
    resp = np.exp(lj - norm[:, None])
    w, mu, var = m_step(resp)
    ll = norm.mean()
    if abs(ll - prev) < tol:
      converged = True
      break
    prev = ll
  order = np.argsort(mu)
  return GaussianMixture1D(w[order], mu[order], var[order], converged, it)


def check_safe_fraction(safe_fraction: float) -> None:
  """ConfigError unless 0 < safe_fraction <= 1."""
  if not 0.0 < float(safe_fraction) <= 1.0:
    raise ConfigError(f"the SafeCLIP safe fraction {safe_fraction} must be in (0, 1] (set by "
                      "config.contrastive.safe_fraction_update and safe_fraction_cap)")


def next_safe_fraction(safe_fraction: float, *, update: float = 0.01, cap: float = 0.85) -> float:
  """The schedule r <- min(r + update, cap), applied after building an epoch's split."""
  check_safe_fraction(safe_fraction)
  if not 0.0 < cap <= 1.0:
    raise ConfigError(f"config.contrastive.safe_fraction_cap={cap} must be in (0, 1]")
  return min(safe_fraction + update, cap)


def mixture_stats(gmm: GaussianMixture1D) -> dict[str, float]:
  """The fitted components (low, high) and their separation d' = (mean_hi - mean_lo) /
  sqrt((var_lo + var_hi) / 2): how far apart the GMM put the two score clusters."""
  d = float((gmm.means[1] - gmm.means[0]) / np.sqrt(gmm.variances.mean()))
  return {"gmm_mean_low": float(gmm.means[0]), "gmm_mean_high": float(gmm.means[1]),
          "gmm_std_low": float(np.sqrt(gmm.variances[0])),
          "gmm_std_high": float(np.sqrt(gmm.variances[1])),
          "gmm_weight_high": float(gmm.weights[1]), "gmm_separation": d,
          "gmm_converged": bool(gmm.converged)}


def safe_risky_split(scores: np.ndarray, *, safe_fraction: Optional[float] = None,
                     threshold: float = 0.9, seed: int = 0, mixture: Optional[list] = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
  """SafeCLIP's split of pairs by their image-caption cosine `scores` (N,).

  p_i = posterior of the higher-mean mixture component. With `safe_fraction=None` (the first
  filtering epoch) Safe = {p >= threshold}; otherwise Safe = the floor(r·N) pairs with the
  largest p (ties broken by the score, then the index). Returns (safe indices, risky indices,
  p, the fraction |Safe|/N) with indices sorted ascending; the fitted mixture is appended to
  `mixture` when a list is given (for mixture_stats).
  """
  scores = np.asarray(scores, np.float64).ravel()
  n = len(scores)
  gmm = fit_gmm_1d(scores, seed=seed)
  if mixture is not None:
    mixture.append(gmm)
  p = gmm.posterior(scores)[:, 1]
  if safe_fraction is None:
    safe_mask = p >= threshold
  else:
    check_safe_fraction(safe_fraction)
    order = np.lexsort((np.arange(n), -scores, -p))
    safe_mask = np.zeros(n, bool)
    safe_mask[order[: int(np.floor(safe_fraction * n))]] = True
  safe = np.flatnonzero(safe_mask)
  return safe, np.flatnonzero(~safe_mask), p, len(safe) / n
