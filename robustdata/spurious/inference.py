"""Group inference (SpuCo's first stage): a partition of the train split into groups from a
reference model's outputs, for group-robust methods when the train split has no group labels.

Kernels (host NumPy / scikit-learn, JAX for EIIL), each taking the reference model's outputs:
- `jtt_groups`: (class, misclassified by the early-stopped ERM reference) (Liu et al. '21);
- `prediction_groups`: (class, the reference's predicted class), the prediction being the
  inferred spurious attribute (Correct-n-Contrast's first stage);
- `cluster_groups`: k-means or a Gaussian mixture per class on the outputs or features, the
  number of clusters per class chosen by silhouette over [min_clusters, max_clusters];
- `spare_groups`: SPARE's inference: per-class k-means on early-epoch softmax outputs, and a
  per-class sampling power (high where the best silhouette is below a threshold);
- `eiil_environments`: EIIL (Creager et al. '21): soft environment logits maximising the
  IRMv1 penalty of the fixed reference model by gradient ascent; groups (class, environment).
SSA (`ssa.py`) trains its own spurious-attribute predictor on the group-labelled val split
instead of reading only the reference's outputs.
`quality` scores a partition against true groups (adjusted Rand index, minority recall).
`GroupPartition` is the artifact that crosses stages (groups.npz + groups.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustdata.registry import ConfigError

NPZ_NAME, JSON_NAME = "groups.npz", "groups.json"


# --- The artifact. -------------------------------------------------------------------------------

@dataclasses.dataclass
class GroupPartition:
  """An inferred partition of a train split: groups[i] in [0, num_groups), none empty."""

  groups: np.ndarray
  group_names: tuple[str, ...]
  method: str
  run_id: str            # the producing inference run
  reference_run_id: str  # the reference model's run
  data_fingerprint: str  # of the train split it partitions (poisoning.artifact)
  extra: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.groups = np.asarray(self.groups, np.int32).reshape(-1)
    self.group_names = tuple(self.group_names)

  @property
  def num_groups(self) -> int:
    return len(self.group_names)

  def save(self, directory: str) -> str:
    """Writes groups.npz and groups.json into `directory`; returns the directory."""
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, NPZ_NAME), groups=self.groups)
    meta = {"group_names": list(self.group_names), "method": self.method, "run_id": self.run_id,
            "reference_run_id": self.reference_run_id,
            "data_fingerprint": self.data_fingerprint, "num_groups": self.num_groups,
            "group_counts": np.bincount(self.groups, minlength=self.num_groups).tolist(),
            "extra": self.extra}
    with open(os.path.join(directory, JSON_NAME), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True)
    return directory

  @classmethod
  def load(cls, directory: str) -> "GroupPartition":
    """Reads what `save` wrote."""
    with open(os.path.join(directory, JSON_NAME)) as f:
      meta = json.load(f)
    with np.load(os.path.join(directory, NPZ_NAME)) as z:
      groups = z["groups"]
    return cls(groups=groups, group_names=meta["group_names"], method=meta["method"],
               run_id=meta["run_id"], reference_run_id=meta["reference_run_id"],
               data_fingerprint=meta["data_fingerprint"], extra=meta.get("extra", {}))

  def check(self, *, fingerprint: str, num_examples: int, field: str) -> None:
    """ConfigError (naming `field`) unless the partition was made for a train split with this
    fingerprint and size, and every group holds an example (balanced methods need each)."""
    if self.data_fingerprint != fingerprint:
      raise ConfigError(
          f"{field}: the groups of inference run {self.run_id} ({self.method}) partition a train "
          f"split with fingerprint {self.data_fingerprint}, but this run's train split has "
          f"fingerprint {fingerprint}; give {field} the same config.data as this run")
    if len(self.groups) != num_examples:
      raise ConfigError(f"{field}: the inferred partition has {len(self.groups)} rows but the "
                        f"train split has {num_examples}")
    counts = np.bincount(self.groups, minlength=self.num_groups)
    if len(counts) > self.num_groups or (counts == 0).any():
      empty = [self.group_names[g] for g in np.flatnonzero(counts[:self.num_groups] == 0)]
      raise ConfigError(f"{field}: the inferred partition of run {self.run_id} has empty groups "
                        f"{empty} or ids beyond its {self.num_groups} groups; group-balanced "
                        "methods need every group non-empty")


def compact(groups: np.ndarray, names: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
  """`groups` renumbered 0.. over the non-empty ids (in order), with their names."""
  groups = np.asarray(groups)
  present = np.flatnonzero(np.bincount(groups, minlength=len(names)))
  remap = np.full(len(names), -1, np.int64)
  remap[present] = np.arange(len(present))
  return remap[groups].astype(np.int32), tuple(names[g] for g in present)


# --- JTT. ----------------------------------------------------------------------------------------

def jtt_groups(logits: np.ndarray, labels: np.ndarray, *, num_classes: int
               ) -> tuple[np.ndarray, tuple[str, ...]]:
  """(class, misclassified by the reference): group 2y + error, empty ids dropped."""
  labels = np.asarray(labels)
  errors = (np.argmax(logits, axis=-1) != labels).astype(np.int64)
  names = [f"y={c},{e}" for c in range(num_classes) for e in ("correct", "error")]
  return compact(2 * labels + errors, names)


def prediction_groups(logits: np.ndarray, labels: np.ndarray, *, num_classes: int
                      ) -> tuple[np.ndarray, tuple[str, ...], list[int]]:
  """(groups, names, group_attribute): the reference's predicted class as the spurious
  attribute (SpuCo's CnC inference; Correct-n-Contrast's first stage), group (class,
  prediction) = C y + prediction with empty ids dropped, and each kept group's prediction."""
  labels = np.asarray(labels)
  predictions = np.argmax(logits, axis=-1).astype(np.int64)
  names = [f"y={c},pred={k}" for c in range(num_classes) for k in range(num_classes)]
  groups, kept = compact(num_classes * labels + predictions, names)
  present = np.flatnonzero(np.bincount(num_classes * labels + predictions,
                                       minlength=num_classes * num_classes))
  return groups, kept, [int(g % num_classes) for g in present]


# --- Clustering. ---------------------------------------------------------------------------------

def _cluster(z: np.ndarray, k: int, *, algorithm: str, seed: int) -> np.ndarray:
  if algorithm == "kmeans":
    from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z)
  from sklearn.mixture import GaussianMixture  # pylint: disable=g-import-not-at-top
  return GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4,
                         random_state=seed).fit(z).predict(z)


def best_clustering(z: np.ndarray, *, min_clusters: int, max_clusters: int, algorithm: str,
                    seed: int, silhouette_sample: int = 2000) -> tuple[np.ndarray, float, dict]:
  """(labels, best silhouette, {k: silhouette}) of the k in [min, max] with the highest mean
  silhouette (ties: the smaller k). Fewer than min_clusters + 1 points: one cluster."""
  from sklearn.metrics import silhouette_score  # pylint: disable=g-import-not-at-top
  if min_clusters < 2 or max_clusters < min_clusters:
    raise ConfigError(f"clusters must satisfy 2 <= min_clusters <= max_clusters, got "
                      f"min_clusters={min_clusters}, max_clusters={max_clusters} "
                      "(config.inference)")
  z = np.asarray(z, np.float64)
  best, best_score, scores = np.zeros(len(z), np.int64), -1.0, {}
  for k in range(min_clusters, min(max_clusters, len(z) - 1) + 1):
    labels = _cluster(z, k, algorithm=algorithm, seed=seed)
    if len(np.unique(labels)) < 2:
      scores[k] = -1.0
      continue
    sample = min(len(z), silhouette_sample)
    scores[k] = float(silhouette_score(z, labels, sample_size=sample if sample < len(z) else None,
                                       random_state=seed))
    if scores[k] > best_score:
      best, best_score = labels, scores[k]
  return np.asarray(best, np.int64), best_score, scores


def cluster_groups(z: np.ndarray, labels: np.ndarray, *, num_classes: int, min_clusters: int = 2,
                   max_clusters: int = 4, algorithm: str = "kmeans", seed: int = 0
                   ) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
  """Per-class clustering of `z` (N, D): groups (class, cluster), clusters chosen by silhouette;
  info holds each class's number of clusters and best silhouette."""
  labels = np.asarray(labels)
  groups = np.zeros(len(labels), np.int64)
  names: list[str] = []
  info: dict[str, Any] = {"clusters_per_class": [], "silhouette_per_class": []}
  for c in range(num_classes):
    rows = np.flatnonzero(labels == c)
    if len(rows) == 0:
      info["clusters_per_class"].append(0)
      info["silhouette_per_class"].append(float("nan"))
      continue
    assign, score, _ = best_clustering(z[rows], min_clusters=min_clusters,
                                       max_clusters=max_clusters, algorithm=algorithm, seed=seed)
    k = int(assign.max()) + 1
    groups[rows] = len(names) + assign
    names.extend(f"y={c},cluster={j}" for j in range(k))
    info["clusters_per_class"].append(k)
    info["silhouette_per_class"].append(score)
  out, names_out = compact(groups, names)
  return out, names_out, info


def spare_groups(probs: np.ndarray, labels: np.ndarray, *, num_classes: int,
                 min_clusters: int = 2, max_clusters: int = 4, silhouette_threshold: float = 0.9,
                 high_sampling_power: float = 2.0, seed: int = 0
                 ) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
  """SPARE's inference: per-class k-means on early-epoch softmax outputs (silhouette-chosen k);
  info['sampling_powers'][c] = high_sampling_power where class c's best silhouette is below
  `silhouette_threshold` (clusters that are not well separated), else 1."""
  groups, names, info = cluster_groups(probs, labels, num_classes=num_classes,
                                       min_clusters=min_clusters, max_clusters=max_clusters,
                                       algorithm="kmeans", seed=seed)
  info["sampling_powers"] = [float(high_sampling_power) if s < silhouette_threshold else 1.0
                             for s in info["silhouette_per_class"]]
  return groups, names, info


# --- EIIL. ---------------------------------------------------------------------------------------

def scale_gradients(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """d/ds CE(s * z_i, y_i) at s = 1 for each example: sum_k (softmax(z_i)_k - [k = y_i]) z_ik."""
  p = jax.nn.softmax(logits, axis=-1)
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return jnp.sum((p - onehot) * logits, axis=-1)


def irm_penalty(env_logits: jnp.ndarray, grads: jnp.ndarray) -> jnp.ndarray:
  """EIIL's IRMv1 penalty of a soft two-environment split (w = sigmoid(env_logits)): the mean
  over the two environments of (d/ds of mean_i w_i loss_i(s))^2, the losses' mean over all N."""
  w = jax.nn.sigmoid(env_logits)
  g_a = jnp.mean(w * grads)
  g_b = jnp.mean((1.0 - w) * grads)
  return 0.5 * (g_a ** 2 + g_b ** 2)


def eiil_environments(logits: np.ndarray, labels: np.ndarray, *, steps: int, lr: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
  """(environment per example (0/1), final env logits, penalty before/after) from Adam ascent on
  the IRMv1 penalty of the fixed reference model's logits, env logits initialised N(0, 1)."""
  grads = scale_gradients(jnp.asarray(logits, jnp.float32), jnp.asarray(labels, jnp.int32))
  u0 = jax.random.normal(jax.random.PRNGKey(seed), (len(labels),), jnp.float32)
  tx = optax.adam(lr)

  def body(_, carry):
    u, opt = carry
    g = jax.grad(lambda v: -irm_penalty(v, grads))(u)
    updates, opt = tx.update(g, opt, u)
    return optax.apply_updates(u, updates), opt

  @jax.jit
  def run(u):
    return jax.lax.fori_loop(0, steps, body, (u, tx.init(u)))[0]

  u = run(u0)
  before, after = float(irm_penalty(u0, grads)), float(irm_penalty(u, grads))
  return np.asarray(u > 0, np.int64), np.asarray(u), [before, after]


def eiil_groups(logits: np.ndarray, labels: np.ndarray, *, num_classes: int, steps: int,
                lr: float, seed: int) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
  """EIIL's environments crossed with the class: group 2y + env, empty ids dropped."""
  env, _, (before, after) = eiil_environments(logits, labels, steps=steps, lr=lr, seed=seed)
  names = [f"y={c},env={e}" for c in range(num_classes) for e in (0, 1)]
  groups, names_out = compact(2 * np.asarray(labels) + env, names)
  return groups, names_out, {"irm_penalty_init": before, "irm_penalty_final": after}


# --- Quality against true groups. ----------------------------------------------------------------

def minority_mask(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """True for examples outside the largest group of their class (a class's minority groups)."""
  groups, labels = np.asarray(groups), np.asarray(labels)
  out = np.zeros(len(groups), bool)
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    ids, counts = np.unique(groups[rows], return_counts=True)
    out[rows] = groups[rows] != ids[np.argmax(counts)]
  return out


def quality(inferred: np.ndarray, true_groups: np.ndarray, labels: np.ndarray
            ) -> dict[str, Optional[float]]:
  """adjusted Rand index of the partitions; minority-group recall (the fraction of true-minority
  examples the inference also puts outside their class's largest group) and precision."""
  from sklearn.metrics import adjusted_rand_score  # pylint: disable=g-import-not-at-top
  true_min = minority_mask(true_groups, labels)
  inf_min = minority_mask(inferred, labels)
  hit = float(np.sum(true_min & inf_min))
  return {"adjusted_rand_index": float(adjusted_rand_score(true_groups, inferred)),
          "minority_group_recall": hit / true_min.sum() if true_min.any() else None,
          "minority_group_precision": hit / inf_min.sum() if inf_min.any() else None}
