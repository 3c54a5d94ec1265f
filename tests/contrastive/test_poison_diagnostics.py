"""The defences' diagnostics and the 'filter' baseline: the host mirror of the RoCLIP pool
against the jitted enqueue, the GMM separation statistics, the filter's kept pairs, and (slow)
the smoke runs that write them into results.json and metrics.jsonl."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.contrastive import data as cdata
from robustdata.contrastive import pool as pool_lib
from robustdata.contrastive import safeclip
from robustdata.evals import attacks as attack_evals


@pytest.mark.parametrize("drop_overflow", [False, True])
def test_pool_id_mirror_follows_the_jitted_enqueue(drop_overflow):
  s, d, rng = 10, 3, np.random.default_rng(0)
  pool = pool_lib.init_pool(s, d, batch_size=4)
  ids, ptr, filled = np.full(s, -1), 0, 0
  next_id = 0
  for k in rng.integers(1, 5, size=12):
    new = np.arange(next_id, next_id + k)
    next_id += k
    emb = np.zeros((k, d), np.float32)
    emb[:, 0] = new + 1  # row content encodes its id (+1: unwritten rows stay 0)
    pool = pool_lib.enqueue(pool, jnp.asarray(emb), drop_overflow=drop_overflow)
    ids, ptr, filled = pool_lib.enqueue_ids(ids, ptr, filled, new, drop_overflow=drop_overflow)
    np.testing.assert_array_equal(np.asarray(pool.embeddings)[:, 0] - 1, ids)
    assert (int(pool.ptr), int(pool.filled)) == (ptr, filled)


def test_mixture_stats_recover_two_separated_clusters():
  rng = np.random.default_rng(1)
  scores = np.concatenate([rng.normal(0.1, 0.05, 900), rng.normal(0.6, 0.1, 300)])
  stats = safeclip.mixture_stats(safeclip.fit_gmm_1d(scores, seed=0))
  assert stats["gmm_mean_low"] == pytest.approx(0.1, abs=0.01)
  assert stats["gmm_mean_high"] == pytest.approx(0.6, abs=0.02)
  assert stats["gmm_std_low"] == pytest.approx(0.05, abs=0.01)
  assert stats["gmm_weight_high"] == pytest.approx(0.25, abs=0.02)
  d = (stats["gmm_mean_high"] - stats["gmm_mean_low"]) / np.sqrt(
      (stats["gmm_std_low"] ** 2 + stats["gmm_std_high"] ** 2) / 2)
  assert stats["gmm_separation"] == pytest.approx(d, rel=1e-6)
  assert stats["gmm_separation"] == pytest.approx(0.5 / np.sqrt(0.00625), rel=0.15)
  mixture = []
  safeclip.safe_risky_split(scores, seed=0, mixture=mixture)
  assert safeclip.mixture_stats(mixture[0]) == stats


def test_filter_keeps_the_best_aligned_pairs():
  rng = np.random.default_rng(2)
  scores = np.round(rng.normal(size=101), 1)  # ties
  kept = cdata.keep_best_aligned(scores, 0.3)
  brute = sorted(range(101), key=lambda i: (-scores[i], i))[:30]
  np.testing.assert_array_equal(kept, sorted(brute))


def test_kept_stats_count_each_attacks_poisons():
  is_poison = np.zeros(20, bool)
  is_poison[[3, 7, 15, 16, 18]] = True
  rows = {"targeted": np.array([3, 7]), "backdoor": np.array([15, 16, 18])}
  kept = [0, 1, 3, 15, 18, 19]
  stats = attack_evals.kept_stats(kept, is_poison, rows, "kept")
  assert stats == {"kept_poison_rate": pytest.approx(3 / 6), "base_poison_rate": 5 / 20,
                   "targeted_in_kept": 1, "backdoor_in_kept": 2}
  assert {a: r.tolist() for a, r in attack_evals.attack_rows(
      np.array([10, 11, 12, 13]), {"targeted": {"poisoned_ids": [13, 11]}}).items()} == {
          "targeted": [1, 3]}


def test_nearest_caption_stats_match_a_loop():
  rng = np.random.default_rng(3)
  n, d, size = 30, 4, 9
  names = rng.random((2, n)) < 0.4  # names[k][row]: train caption `row` names class k
  is_poison = rng.random(n) < 0.3
  pool, emb = rng.normal(size=(size, d)), rng.normal(size=(6, d))
  ids = rng.integers(-1, n, size=size)
  classes = rng.integers(0, 2, size=6)
  got = attack_evals.nearest_caption_stats(emb, classes, pool, ids, lambda k: names[k],
                                           is_poison, prefix="targeted")
  hits, base, poisoned = [], [], []
  for e, k in zip(emb, classes):
    cos = [float(e @ q / np.linalg.norm(q)) for q in pool]
    j = ids[int(np.argmax(cos))]
    hits.append(j >= 0 and names[k][j])
    poisoned.append(j >= 0 and is_poison[j])
    base.append(sum(names[k][i] for i in ids if i >= 0) / size)
  assert got == pytest.approx({"targeted_nn_names_class": np.mean(hits),
                               "targeted_pool_names_class": np.mean(base),
                               "targeted_nn_is_poison": np.mean(poisoned)})


def _records(run_dir, split):
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def _smoke(module, tmp_path, **overrides):
  import importlib
  from robustdata import runner
  config = importlib.import_module(f"configs.clip_scenes.{module}").get_config("smoke")
  with config.unlocked():
    for dotted, value in overrides.items():
      section, _, field = dotted.rpartition(".")
      (config[section] if section else config)[field] = value
  return runner.run(config, str(tmp_path))


def _check_filter(run_dir, results):
  """The filter smoke trains its second epoch on the kept pairs and logs the filter."""
  n = results["train_size"]
  kept = int(np.floor(0.9 * n))
  assert results["filter_kept"] == kept and len(results["filter_history"]) == 1
  # Epoch 1 on all pairs, epoch 2 on the kept ones (batches dropped only in the CLIP epoch).
  assert results["examples_seen"] == (n // 100) * 100 + (kept // 100) * 100
  rec = _records(run_dir, "filter")
  assert len(rec) == 1 and rec[0]["epoch"] == 1 and rec[0]["kept"] == kept
  assert rec[0]["targeted_in_kept"] + rec[0]["backdoor_in_kept"] <= results["poison_count"]
  assert results["filter_base_poison_rate"] == pytest.approx(results["poison_ratio"])


def _check_roclip(run_dir, results):
  """The RoCLIP smoke writes its matching diagnosis to results.json and metrics.jsonl."""
  matches = results["roclip_matches"]
  assert [m["epoch"] for m in matches] == [1]  # the smoke's one matching epoch (0-based)
  for key in ("targeted", "backdoor"):
    for what in ("nn_names_class", "pool_names_class", "nn_is_poison"):
      assert 0.0 <= matches[0][f"{key}_{what}"] <= 1.0
  assert _records(run_dir, "roclip_match")[0]["targeted_pool_names_class"] == pytest.approx(
      matches[0]["targeted_pool_names_class"])


@pytest.mark.slow
def test_safeclip_smoke_writes_its_diagnostics(tmp_path):
  run_dir, results = _smoke("safeclip", tmp_path)
  split = results["safeclip_splits"][-1]
  assert split["base_poison_rate"] == pytest.approx(split["poisons"] / results["train_size"])
  assert split["safe_poison_rate"] == pytest.approx(split["poisons_in_safe"]
                                                    / max(split["safe_count"], 1))
  assert split["targeted_in_safe"] + split["backdoor_in_safe"] == split["poisons_in_safe"]
  assert results["safeclip_gmm_separation"] == split["gmm_separation"] > 0
  assert len(_records(run_dir, "safeclip_split")) == 1


@pytest.mark.slow
@pytest.mark.parametrize("module", ["roclip", "filter"])
def test_interrupted_run_resumes_to_the_same_diagnostics(module, tmp_path, monkeypatch):
  """The uninterrupted smoke writes the method's diagnostics; SIGINT two steps before the end
  (inside RoCLIP's matching epoch / the filtered epoch): the resumed run restores the pool-row
  mirror / the kept pairs and ends with the same results."""
  import signal
  from robustdata import runner
  from robustdata.train import driver
  from robustdata.train import metrics as metrics_lib
  full_dir, full = _smoke(module, tmp_path / "full")
  {"roclip": _check_roclip, "filter": _check_filter}[module](full_dir, full)
  append, count = metrics_lib.MetricsWindow.append, [0]

  def interrupt_after(self, metrics):
    append(self, metrics)
    count[0] += 1
    if count[0] == full["steps"] - 2:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", interrupt_after)
  with pytest.raises(driver.Interrupted):
    _smoke(module, tmp_path / "part")
  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", append)
  _, resumed = _smoke(module, tmp_path / "part")
  rows = runner.compare(json.loads(json.dumps(full)), json.loads(json.dumps(resumed)))
  assert all(same for *_, same in rows), [r for r in rows if not r[3]]
  key = {"roclip": "roclip_matches", "filter": "filter_history"}[module]
  assert resumed[key] == full[key] and resumed[key]
