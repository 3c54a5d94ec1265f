"""The contrastive trainer: CLIP, RoCLIP, SafeCLIP and CleanCLIP pre-training on (optionally
poisoned) image-caption pairs, as a `Task` of the one loop driver (`train/driver.py`).
Registered as trainer 'contrastive'.

Each epoch has a phase (config.epoch_phase) that decides its batches and step kinds:
- clip: CLIP on all pairs (drop_last), warm-up + cosine over the CLIP epochs;
- roclip_match: RoCLIP matching against the caption pool (K-th epochs);
- unimodal / filter / safe: SafeCLIP Phase A (unimodal, all pairs), Phase B (CLIP at the
  constant filter_lr), Phase C (score pairs -> GMM -> safe/risky split; unimodal pass on the
  risky pairs then CLIP pass on the safe pairs, half-cosine LRs over Phase C);
- finetune: CleanCLIP on the clean subset with a fresh AdamW state;
- filtered: the 'filter' baseline: CLIP on the pairs kept by image-caption similarity.
Diagnostics (metrics.jsonl and results.json): per RoCLIP matching epoch, the share of poisoned
images whose nearest pool caption names the attack's class (`roclip_match` records); per
SafeCLIP split, the poisons in the safe set against the base rate and the GMM's components
(`safeclip_split`); per filter scoring, the poisons kept (`filter`).
The task's host state (the current SafeCLIP split, safe fraction and split history, the filter's
kept pairs, what each RoCLIP pool row holds) is saved beside the train state, so a rerun on the
same run directory resumes bitwise.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.contrastive import config as ccfg
from robustdata.contrastive import data as cdata
from robustdata.contrastive import optim
from robustdata.contrastive import pool as pool_lib
from robustdata.contrastive import safeclip
from robustdata.contrastive import steps as steps_lib
from robustdata.data import image_augment as augment_lib
from robustdata.data import sources
from robustdata.evals import attacks as attack_evals
from robustdata.evals import contrastive as ceval
from robustdata.models.clip import make_clip
from robustdata.models.conv import with_conv
from robustdata.poisoning import clip_attacks, clip_data
from robustdata.registry import TRAINERS, ConfigError
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import sharding as sharding_lib
from robustdata.train.driver import Driver, Loop, Task, abstract_on

_KIND_OF_PHASE = {"clip": "clip", "roclip_match": "roclip_match", "unimodal": "unimodal",
                  "filter": "cross_clip", "finetune": "cleanclip", "filtered": "clip"}
# The caption pools of each method (SafeCLIP's only with unimodal_pool_size > 0).
_POOLS = {"roclip": ("text",), "safeclip": ("image", "text")}
# Step fields that only some methods have (contrastive_defaults); the other methods' steps run
# with these fixed values, which are not config fields of theirs.
_FIXED_STEP_FIELDS = {"drop_overflow": False, "clip_weight": 1.0, "inmodal_weight": 1.0,
                      "aug_chain": "cross_aug"}


def _step_field(c, name: str) -> Any:
  return c[name] if name in c else _FIXED_STEP_FIELDS[name]


class _Encoders:
  """Jitted, batched eval-mode encoders over host arrays (padded to a static batch), shard-wise
  across processes: each reads only its devices' rows of a chunk, and every process gets the
  whole (replicated) output, so pool fills and SafeCLIP splits agree."""

  def __init__(self, model, *, batch_size: int, sharding):
    self.batch_size, self.sharding = batch_size, sharding
    whole = sharding_lib.replicated(sharding.mesh)
    self._fns = {m: jax.jit(functools.partial(self._apply, model, m), out_shardings=whole)
                 for m in ("encode_image", "encode_text", "image_features")}
    self._score = jax.jit(steps_lib.make_score_fn(model), out_shardings=whole)

  @staticmethod
  def _apply(model, method, params, x):
    return model.apply({"params": params}, x, method=getattr(model, method))

  def _map(self, fn, *arrays) -> np.ndarray:
    n, b, out = len(arrays[0]), self.batch_size, []
    mine = sharding_lib.process_rows(self.sharding, b)
    for s in range(0, n, b):
      take = np.arange(s, min(s + b, n))
      k = len(take)
      if k < b:  # pad with the chunk's last row
        take = np.concatenate([take, np.full(b - k, take[-1])])
      placed = sharding_lib.put_local({str(i): a[take[mine]] for i, a in enumerate(arrays)},
                                      self.sharding, b)
      out.append(np.asarray(fn(*[placed[str(i)] for i in range(len(arrays))]))[:k])
    return np.concatenate(out)

  def __call__(self, method: str, params, x: np.ndarray) -> np.ndarray:
    return self._map(functools.partial(self._fns[method], params), x)

  def scores(self, params, x: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return self._map(functools.partial(self._score, params), x, tokens)


class ContrastiveTask(Task):
  """CLIP-family pre-training: per-epoch phases of step kinds over the (poisoned) pairs."""

  loss_name = "contrastive loss"
  nan_hint = "Lower config.optim.learning_rate (or the method's learning rates)."

  def validate(self, config, *, num_devices: int) -> None:
    ccfg.validate(config, num_devices=num_devices)

  # --- Setup: data (+ poisons, caption views), model, schedules, shardings, steps. -------------

  def setup(self, driver: Driver) -> None:
    config, mesh = driver.config, driver.mesh
    self.driver, self.config = driver, config
    c, method, bsz = config.contrastive, config.method, config.train.batch_size
    self.c, self.method, self.bsz = c, method, bsz
    self.data = data = sources.load(config.data)
    self.train, self.poison_record, self.attack_eval = clip_data.poison_train(config, data)
    self.views = cdata.caption_views(config, data, self.train)
    self.n = n = len(self.train)
    ccfg.require(n >= bsz, f"config.train.batch_size={bsz} exceeds the {n} training pairs")
    self.is_poison = self.train.extras.get("poison", np.zeros((n,), np.int8)).astype(bool)
    self.clean_subset = None
    if method == "cleanclip":
      clean = np.flatnonzero(~self.is_poison)
      k = c.clean_subset_size or len(clean)
      ccfg.require(bsz <= k <= len(clean), "config.contrastive.clean_subset_size="
                  f"{c.clean_subset_size} must be in [batch_size={bsz}, {len(clean)} clean pairs]"
                  " (or 0 for all)")
      rng = np.random.default_rng(np.random.SeedSequence([config.seed, 64]))
      self.clean_subset = np.sort(rng.choice(clean, size=k, replace=False))

    info = data.info
    self.model = with_conv(make_clip(config.model, vocab_size=info["vocab_size"],
                                     context_length=info["context_length"]), config)
    self.tx = optim.make_optimizer(learning_rate=config.optim.learning_rate,
                                   weight_decay=config.optim.weight_decay)
    self.rng = jax.random.PRNGKey(config.seed)
    self.dim = int(config.model.embed_dim)
    self.pool_names = _POOLS.get(method, ()) if (method != "safeclip"
                                                 or c.unimodal_pool_size) else ()
    self.pool_size = {"roclip": "pool_size", "safeclip": "unimodal_pool_size"}.get(method)
    self.pool_size = c[self.pool_size] if self.pool_size else 0

    self.abstract = jax.eval_shape(self._init, self.rng)
    self.repl = sharding_lib.replicated(mesh)
    self.state_sharding = jax.tree.map(lambda _: self.repl, self.abstract)
    self.batch_sharding = sharding_lib.batch_sharding(mesh)
    self.compiled: dict[str, Any] = {}
    self.encoders = _Encoders(self.model, batch_size=config.train.eval_batch_size,
                              sharding=self.batch_sharding)
    self.safe, self.safe_fraction, self.split_history = None, None, []
    self.kept, self.filter_history, self.match_history = None, [], []
    self.pool_rows = None  # RoCLIP: [ids (train row per pool row, -1: random), ptr, filled]
    self.attack_rows = attack_evals.attack_rows(self.train.ids, self.poison_record)
    if method == "roclip" and c.pool_prefill == "random":  # N(0, 1) rows hold no caption
      self.pool_rows = [[-1] * c.pool_size, 0, c.pool_size]
    if method == "filter":
      k = int(np.floor(c.keep_fraction * n))
      ccfg.require(k >= bsz, f"config.contrastive.keep_fraction={c.keep_fraction} keeps {k} of "
                  f"{n} pairs, fewer than config.train.batch_size={bsz}")

  def _make_pools(self, key) -> dict[str, pool_lib.Pool]:
    random_rows = self.pool_names and self.c.pool_prefill == "random"
    return {name: pool_lib.init_pool(self.pool_size, self.dim, prefill_random=random_rows,
                                     key=jax.random.fold_in(key, j), batch_size=self.bsz)
            for j, name in enumerate(self.pool_names)}

  def _init(self, key):
    return steps_lib.create_state(self.model, self.tx, rng=key,
                                  image_shape=self.train.x.shape[1:],
                                  context_length=self.data.info["context_length"],
                                  pools=self._make_pools(jax.random.fold_in(key, 7)))

  def abstract_state(self) -> Any:
    return abstract_on(self.abstract, self.state_sharding)

  def init_state(self) -> Any:
    state = jax.jit(self._init, out_shardings=self.state_sharding)(self.rng)
    source = ccfg.pretrained_dir(self.config, self.driver.run_dir)  # CleanCLIP's start, or ''
    if source:
      state = state.replace(params=_pretrained_params(source, self.abstract_state()))
    return state

  def host_state(self) -> dict[str, Any]:
    out = {"safe": self.safe, "safe_fraction": self.safe_fraction,
           "split_history": self.split_history}
    if self.method == "filter":
      out.update(kept=self.kept, filter_history=self.filter_history)
    if self.method == "roclip":
      out.update(pool_rows=self.pool_rows, match_history=self.match_history)
    return out

  def load_host_state(self, saved: dict[str, Any]) -> None:
    self.safe, self.safe_fraction = saved.get("safe"), saved.get("safe_fraction")
    self.split_history = saved.get("split_history", [])
    self.kept, self.filter_history = saved.get("kept"), saved.get("filter_history", [])
    self.pool_rows, self.match_history = saved.get("pool_rows"), saved.get("match_history", [])

  def expected_steps(self) -> int:
    return self.config.train.epochs * (self.n // self.bsz)

  def step_fn(self, kind: str):
    if kind not in self.compiled:
      c = self.c
      fn = steps_lib.make_step(self.model, self.tx, kind=kind, augment=bool(c.augment),
                               drop_overflow=bool(_step_field(c, "drop_overflow")),
                               clip_weight=_step_field(c, "clip_weight"),
                               inmodal_weight=_step_field(c, "inmodal_weight"),
                               aug_kwargs=augment_lib.chain(_step_field(c, "aug_chain")))
      self.compiled[kind] = jax.jit(fn, in_shardings=(self.state_sharding, self.batch_sharding,
                                                      self.repl),
                                    out_shardings=(self.state_sharding, self.repl),
                                    donate_argnums=(0,))
    return self.compiled[kind]

  # --- Schedules and the epoch plan. ------------------------------------------------------------

  def phase_span(self, phase: str) -> tuple[int, int]:
    """First epoch and number of epochs of the contiguous run of `phase`-like epochs."""
    clip_like = ("clip", "roclip_match", "filtered")
    group = {"clip": clip_like, "roclip_match": clip_like, "filtered": clip_like}.get(
        phase, (phase,))
    members = [e for e in range(self.config.train.epochs)
               if ccfg.epoch_phase(self.config, e) in group]
    return members[0], len(members)

  def learning_rate(self, phase: str, kind: str, epoch: int, i: int, steps: int) -> float:
    c = self.c
    if phase in ("clip", "roclip_match", "filtered", "unimodal"):
      if phase == "unimodal":  # Phase A shares one schedule with Phase B (spec §3)
        start, peak = 0, c.in_lr
        total = (c.inmodal_warmup + c.multimodal_warmup) * steps
      else:
        start, count = self.phase_span(phase)
        peak, total = self.config.optim.learning_rate, count * steps
      return optim.phase_learning_rate((epoch - start) * steps + i, peak_lr=peak,
                                       warmup_steps=min(c.warmup_steps, total), total_steps=total)
    if phase == "filter":
      return float(c.filter_lr)
    if phase == "finetune":
      start, count = self.phase_span("finetune")
      total = count * steps
      return optim.phase_learning_rate((epoch - start) * steps + i, peak_lr=c.finetune_lr,
                                       warmup_steps=min(c.finetune_warmup_steps, total),
                                       total_steps=total)
    start, count = self.phase_span("safe")  # Phase C: half-cosine by epoch progress per pass
    peak = c.in_lr if kind == "unimodal" else c.cross_lr
    lr = optim.cosine(peak, (epoch - start + i / max(steps, 1)) / count)
    if c.phase_c_warmup:  # times a linear warm-up over the pass's own first warmup_steps steps
      lr *= min(1.0, (self.phase_c_steps(kind, epoch, i) + 1) / max(c.warmup_steps, 1))
    return lr

  def phase_c_steps(self, kind: str, epoch: int, i: int) -> int:
    """Steps of the Phase C pass `kind` (unimodal on the risky pairs, CLIP on the safe ones)
    taken before step i of `epoch`: each earlier split's pass counts its batches, and this
    epoch's plan runs the risky batches first. Derived from the split history, so it resumes."""
    bsz, n = self.bsz, self.n
    sizes = [h["safe_count"] if kind != "unimodal" else n - h["safe_count"]
             for h in self.split_history if h["epoch"] < epoch]
    earlier = sum(-(-size // bsz) for size in sizes)
    if kind == "unimodal":
      return earlier + i
    return earlier + i - sum(1 for _, k in self.plan if k == "unimodal")

  def plan_epoch(self, epoch: int) -> tuple[str, list[tuple[np.ndarray, str]]]:
    """(phase, [(indices, step kind)]) of `epoch`; SafeCLIP's split comes from `self.safe`."""
    phase, bsz = ccfg.epoch_phase(self.config, epoch), self.bsz
    order = np.random.default_rng(np.random.SeedSequence([self.config.seed, 65, epoch]))
    if phase == "safe":
      safe = np.asarray(self.safe, np.int64)
      risky = np.setdiff1d(np.arange(self.n), safe)
      if not ccfg.safeclip_ablation(self.config, "risky_pass"):
        risky = risky[:0]
      return phase, ([(b, "unimodal") for b in cdata.batches_of(order.permutation(risky), bsz,
                                                              drop_last=False)]
                     + [(b, "cross_clip") for b in cdata.batches_of(order.permutation(safe), bsz,
                                                                  drop_last=False)])
    pool = {"finetune": self.clean_subset, "filtered": self.kept}.get(phase)
    pool = np.arange(self.n) if pool is None else np.asarray(pool, np.int64)
    return phase, [(b, _KIND_OF_PHASE[phase])
                   for b in cdata.batches_of(order.permutation(pool), bsz, drop_last=True)]

  def _prepare_epoch(self, loop: Loop) -> None:
    """Once per epoch, before its first step: pool pre-fill, SafeCLIP split, fresh optimizer."""
    config, c, n, epoch = self.config, self.c, self.n, loop.epoch
    phase = ccfg.epoch_phase(config, epoch)
    fill = {"roclip_match": ("text",), "unimodal": self.pool_names}.get(phase, ())
    if fill and c.pool_prefill == "captions" and int(self.state.pools[fill[0]].filled) == 0:
      r = np.random.default_rng(np.random.SeedSequence([config.seed, 66]))
      rows = np.sort(r.choice(n, size=min(self.pool_size, n), replace=False))
      params, tokens = self.state.params, self.train.extras["tokens"]
      emb = {"text": self.encoders("encode_text", params, tokens[rows]),
             "image": self.encoders("encode_image", params, self.train.x[rows])
             if "image" in fill else None}
      pools = dict(self.state.pools)
      for name in fill:
        pools[name] = pool_lib.init_pool(self.pool_size, self.dim, prefill=jnp.asarray(emb[name]),
                                         batch_size=self.bsz)
      self.state = jax.device_put(self.state.replace(pools=pools), self.state_sharding)
      if self.method == "roclip":  # pool row j holds the caption of train row rows[j]
        kept = rows[-self.pool_size:]
        ids = np.full(self.pool_size, -1, np.int64)
        ids[:len(kept)] = kept
        self.pool_rows = [ids.tolist(), len(kept) % self.pool_size, len(kept)]
    if phase == "safe":
      self._split(loop)
    if phase == "filtered":
      every, since = c.refilter_every, epoch - c.filter_warmup_epochs
      if self.kept is None or (every and since % every == 0):
        self._filter(loop)
    if phase == "finetune" and epoch == self.phase_span("finetune")[0] and c.pretrain_epochs > 0:
      fresh = self.tx.init(self.state.params)
      self.state = jax.device_put(self.state.replace(opt_state=fresh), self.state_sharding)

  def _split(self, loop: Loop) -> None:
    """SafeCLIP Phase C: score every pair, split into safe and risky, log the split."""
    c, is_poison, epoch, start, mixture = self.c, self.is_poison, loop.epoch, time.time(), []
    scores = self.encoders.scores(self.state.params, self.train.x, self.train.extras["tokens"])
    safe, _, _, frac = safeclip.safe_risky_split(scores, safe_fraction=self.safe_fraction,
                                                 threshold=c.safe_threshold,
                                                 seed=self.config.seed, mixture=mixture)
    if ccfg.safeclip_ablation(self.config, "safe_set") == "uniform":  # same size, no scores
      draw = np.random.default_rng(np.random.SeedSequence([self.config.seed, 67, epoch]))
      safe = np.sort(draw.choice(self.n, size=len(safe), replace=False))
    self.safe = safe.tolist()
    self.safe_fraction = safeclip.next_safe_fraction(
        max(frac, 1.0 / self.n), update=c.safe_fraction_update, cap=c.safe_fraction_cap)
    stats = {"safe_fraction": frac, "safe_count": len(safe),
             "poisons_in_safe": int(is_poison[safe].sum()), "poisons": int(is_poison.sum()),
             "mean_score_poison": float(scores[is_poison].mean()) if is_poison.any() else None,
             "mean_score_clean": float(scores[~is_poison].mean()),
             **attack_evals.kept_stats(safe, is_poison, self.attack_rows, "safe"),
             **safeclip.mixture_stats(mixture[0])}
    self.split_history.append({"epoch": epoch, **stats})  # timings: metrics.jsonl only
    self.driver.writer.write(loop.step, "safeclip_split",
                             {**stats, "score_time_s": time.time() - start}, epoch=epoch)

  def _filter(self, loop: Loop) -> None:
    """The 'filter' baseline: score every pair, keep the keep_fraction best-aligned, log it."""
    start = time.time()
    scores = self.encoders.scores(self.state.params, self.train.x, self.train.extras["tokens"])
    kept = cdata.keep_best_aligned(scores, self.c.keep_fraction)
    self.kept = kept.tolist()
    p = self.is_poison
    stats = {"kept": len(kept), "poisons": int(p.sum()),
             "mean_score_poison": float(scores[p].mean()) if p.any() else None,
             "mean_score_clean": float(scores[~p].mean()),
             **attack_evals.kept_stats(kept, p, self.attack_rows, "kept")}
    self.filter_history.append({"epoch": loop.epoch, **stats})
    self.driver.writer.write(loop.step, "filter", {**stats, "score_time_s": time.time() - start},
                             epoch=loop.epoch)

  def end_epoch(self, loop: Loop) -> None:
    if self.phase == "roclip_match" and self.attack_rows and self.pool_rows is not None:
      self._match_diagnosis(loop)

  def _match_diagnosis(self, loop: Loop) -> None:
    """RoCLIP after a matching epoch: the nearest pool captions of each attack's poisoned
    images (eval-mode embeddings, this epoch's final parameters and pool; the attack's class:
    targeted, the adversarial class; backdoor, the target class)."""
    start, stats = time.time(), {}
    ids, _, filled = self.pool_rows
    ids = np.asarray(ids, np.int64)[:filled]
    pool = np.asarray(jax.device_get(self.state.pools["text"].embeddings))[:filled]
    for attack, rows in self.attack_rows.items():
      emb = self.encoders("encode_image", self.state.params, self.train.x[rows])
      stats.update(attack_evals.nearest_caption_stats(
          emb, self.train.y[rows], pool, ids, self._mentions, self.is_poison, prefix=attack))
    self.match_history.append({"epoch": loop.epoch, **stats})
    self.driver.writer.write(loop.step, "roclip_match",
                             {**stats, "diagnosis_time_s": time.time() - start}, epoch=loop.epoch)

  def _mentions(self, k: int) -> np.ndarray:
    """(n,) bool: training captions that name class k (or a synonym); cached."""
    cache = self.__dict__.setdefault("_mention_cache", {})
    if k not in cache:
      name = self.data.info["class_names"][k]
      cache[k] = clip_attacks.caption_mentions(
          self.train.extras["caption"], [name, *self.data.info.get("synonyms", {}).get(name, ())])
    return cache[k]

  def start_epoch(self, loop: Loop) -> int:
    epoch = loop.epoch
    if loop.step_in_epoch == 0:
      self._prepare_epoch(loop)
    self.phase, self.plan = self.plan_epoch(epoch)
    if ccfg.eda_captions(self.config) == "epoch" and self.c.augment:  # RoCLIP: fresh EDA views
      self.views = cdata.caption_views(self.config, self.data, self.train, epoch=epoch)
    return len(self.plan)

  def batch_of(self, idx: np.ndarray, kind: str) -> dict[str, Any]:
    """The padded device batch of `idx` for a step of `kind`; this process reads only the rows
    its devices hold."""
    k, bsz = len(idx), self.bsz
    pad = np.concatenate([idx, np.repeat(idx[:1], bsz - k)]) if k < bsz else idx
    first, second = cdata.step_tokens(self.config, kind, self.train.extras["tokens"], self.views)
    rows = sharding_lib.process_rows(self.batch_sharding, bsz)
    mask = (np.arange(bsz) < k).astype(np.float32)[rows]
    pad = pad[rows]
    host_batch = {"x": self.train.x[pad], "tokens": first[pad].astype(np.int32),
                  "tokens_aug": second[pad].astype(np.int32), "mask": mask}
    return sharding_lib.put_local(host_batch, self.batch_sharding, bsz)

  def train_step(self, loop: Loop, i: int) -> tuple[dict[str, Any], int]:
    idx, kind = self.plan[i]
    lr = self.learning_rate(self.phase, kind, loop.epoch, i, len(self.plan))
    self.state, metrics = self.step_fn(kind)(self.state, self.batch_of(idx, kind), np.float32(lr))
    if kind == "roclip_match" and self.pool_rows is not None:  # mirror the step's enqueue
      ids, ptr, filled = pool_lib.enqueue_ids(
          np.asarray(self.pool_rows[0]), self.pool_rows[1], self.pool_rows[2], np.asarray(idx),
          drop_overflow=bool(self.c.drop_overflow))
      self.pool_rows = [ids.tolist(), int(ptr), int(filled)]
    return metrics, len(idx)

  def after_epoch(self, loop: Loop, *, eval_due: bool) -> None:
    if eval_due and loop.epoch < self.config.train.epochs:  # the last epoch: in the results
      self.driver.writer.write(loop.step, "eval", self.evaluate(with_probe=False),
                               epoch=loop.epoch)

  # --- Evaluation and results. ------------------------------------------------------------------

  def evaluate(self, *, with_probe: bool) -> dict[str, Any]:
    params, enc = self.state.params, self.encoders
    return ceval.evaluate(self.config, self.data, self.attack_eval,
                          encode_image=lambda x: enc("encode_image", params, x),
                          encode_text=lambda t: enc("encode_text", params, t),
                          image_features=lambda x: enc("image_features", params, x),
                          with_probe=with_probe)

  def results(self, loop: Loop, wall_time_s: float) -> dict[str, Any]:
    results: dict[str, Any] = {
        "train_size": self.n, "poison_count": self.poison_record["poison_count"],
        "poison_ratio": self.poison_record["poison_ratio"], "poison": self.poison_record,
        **self.evaluate(with_probe=True)}
    if self.method == "safeclip":
      results["safeclip_splits"] = self.split_history
      if self.split_history:
        last = self.split_history[-1]
        results.update({f"safeclip_{k}": last.get(k) for k in (
            "safe_poison_rate", "base_poison_rate", "gmm_separation")})
    if self.method == "roclip" and self.match_history:
      results["roclip_matches"] = self.match_history
      results.update({f"roclip_{k}": v for k, v in self.match_history[-1].items()
                      if k.endswith(("_names_class", "_is_poison"))})
    if self.method == "filter":
      results["filter_history"] = self.filter_history
      if self.filter_history:
        last = self.filter_history[-1]
        results.update({f"filter_{k}": last.get(k) for k in (
            "kept", "kept_poison_rate", "base_poison_rate")})
    if self.method == "cleanclip":
      results["clean_subset_size"] = int(len(self.clean_subset))
    return results


@TRAINERS.register("contrastive")
def train_and_evaluate_contrastive(config, run_dir: str) -> dict[str, Any]:
  """Trains per a resolved `config` (method clip/roclip/safeclip/cleanclip), writing
  metrics.jsonl, checkpoints and results.json into `run_dir`; a rerun resumes from the latest
  checkpoint."""
  return Driver(config, run_dir).run(ContrastiveTask())


train_and_evaluate_contrastive.task = ContrastiveTask  # runner.validate_chain validates with it


def _pretrained_params(path: str, abstract_sharded) -> Any:
  """The params of the latest checkpoint of a finished `clip` run directory (or its
  checkpoints/ directory), restored onto this config's state structure."""
  directory = path if os.path.basename(os.path.normpath(path)) == "checkpoints" else \
      os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    raise ConfigError(f"config.contrastive.pretrained_checkpoint={path!r} holds no checkpoints/ "
                      "directory (give a finished clip run directory)")
  return checkpoint_lib.restore_finished(directory, abstract_sharded, missing=(
      f"config.contrastive.pretrained_checkpoint={path!r} has no checkpoint")).params
