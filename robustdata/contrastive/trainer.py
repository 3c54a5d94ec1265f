"""`train_and_evaluate_contrastive(config, run_dir)`: CLIP, RoCLIP, SafeCLIP and CleanCLIP
pre-training on (optionally poisoned) image-caption pairs, registered as trainer 'contrastive'.

Sections as in the supervised loop: setup and validation, data (+ poisons, caption views),
model and optimizer, state and shardings, compiled steps, restore, loop, results. Each epoch
has a phase (experiment.epoch_phase) that decides its batches and step kinds:
- clip: CLIP on all pairs (drop_last), warm-up + cosine over the CLIP epochs;
- roclip_match: RoCLIP matching against the caption pool (K-th epochs);
- unimodal / filter / safe: SafeCLIP Phase A (unimodal, all pairs), Phase B (CLIP at the
  constant filter_lr), Phase C (score pairs -> GMM -> safe/risky split; unimodal pass on the
  risky pairs then CLIP pass on the safe pairs, half-cosine LRs over Phase C);
- finetune: CleanCLIP on the clean subset with a fresh AdamW state.
The host state (epoch, step in epoch, the current SafeCLIP split and safe fraction) is saved
beside the train state, so a rerun on the same run directory resumes bitwise.
"""

from __future__ import annotations

import functools
import os
import signal
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustdata import config_lib
from robustdata.contrastive import augment as augment_lib
from robustdata.contrastive import experiment as exp
from robustdata.contrastive import optim
from robustdata.contrastive import pool as pool_lib
from robustdata.contrastive import safeclip
from robustdata.contrastive import steps as steps_lib
from robustdata.data import sources
from robustdata.models.clip import make_clip
from robustdata.registry import TRAINERS, ConfigError
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import metrics as metrics_lib
from robustdata.train import run_dir as run_dir_lib
from robustdata.train import sharding as sharding_lib
from robustdata.train.loop import NonFiniteLossError
from robustdata.train.policies import to_json

_KIND_OF_PHASE = {"clip": "clip", "roclip_match": "roclip_match", "unimodal": "unimodal",
                  "filter": "cross_clip", "finetune": "cleanclip"}


class _Encoders:
  """Jitted, batched eval-mode encoders over host arrays (padded to a static batch)."""

  def __init__(self, model, *, batch_size: int, sharding):
    self.batch_size, self.sharding = batch_size, sharding
    self._fns = {m: jax.jit(functools.partial(self._apply, model, m))
                 for m in ("encode_image", "encode_text", "image_features")}
    self._score = jax.jit(steps_lib.make_score_fn(model))

  @staticmethod
  def _apply(model, method, params, x):
    return model.apply({"params": params}, x, method=getattr(model, method))

  def _map(self, fn, *arrays) -> np.ndarray:
    n, b, out = len(arrays[0]), self.batch_size, []
    for s in range(0, n, b):
      parts = [a[s:s + b] for a in arrays]
      k = len(parts[0])
      if k < b:
        parts = [np.concatenate([p, np.repeat(p[-1:], b - k, axis=0)]) for p in parts]
      out.append(np.asarray(fn(*[jax.device_put(p, self.sharding) for p in parts]))[:k])
    return np.concatenate(out)

  def __call__(self, method: str, params, x: np.ndarray) -> np.ndarray:
    return self._map(functools.partial(self._fns[method], params), x)

  def scores(self, params, x: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return self._map(functools.partial(self._score, params), x, tokens)


@TRAINERS.register("contrastive")
def train_and_evaluate_contrastive(config, run_dir: str) -> dict[str, Any]:
  """Trains per `config` (method clip/roclip/safeclip/cleanclip), writing metrics.jsonl,
  checkpoints and results.json into `run_dir`; a rerun resumes from the latest checkpoint."""
  # --- Setup and validation. -------------------------------------------------------------------
  config = config_lib.with_defaults(config)  # what runner.run hashes, also when called directly
  sharding_lib.maybe_initialize_distributed(config.train.distributed)
  mesh = sharding_lib.make_mesh()
  exp.validate(config, num_devices=mesh.size)
  os.makedirs(run_dir, exist_ok=True)
  c, method, bsz = config.contrastive, config.method, config.train.batch_size

  # --- Data: the source, the poisons, the caption views. ----------------------------------------
  data = sources.load(config.data)
  train, poison_record, attack_eval = exp.poison_train(config, data)
  views = exp.caption_views(config, data, train)
  n = len(train)
  exp.require(n >= bsz, f"config.train.batch_size={bsz} exceeds the {n} training pairs")
  is_poison = train.extras.get("poison", np.zeros((n,), np.int8)).astype(bool)
  clean_subset = None
  if method == "cleanclip":
    clean = np.flatnonzero(~is_poison)
    k = c.clean_subset_size or len(clean)
    exp.require(bsz <= k <= len(clean), f"config.contrastive.clean_subset_size={c.clean_subset_size}"
               f" must be in [batch_size={bsz}, {len(clean)} clean pairs] (or 0 for all)")
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 64]))
    clean_subset = np.sort(rng.choice(clean, size=k, replace=False))

  # --- Model, optimizer, schedules. ---------------------------------------------------------------
  info = data.info
  model = make_clip(config.model, vocab_size=info["vocab_size"],
                    context_length=info["context_length"])
  tx = optim.make_optimizer(learning_rate=config.optim.learning_rate,
                            weight_decay=config.optim.weight_decay)
  epochs = config.train.epochs
  full_steps = n // bsz

  def phase_span(phase: str) -> tuple[int, int]:
    """First epoch and number of epochs of the contiguous run of `phase`-like epochs."""
    group = {"clip": ("clip", "roclip_match"), "roclip_match": ("clip", "roclip_match")}.get(
        phase, (phase,))
    members = [e for e in range(epochs) if exp.epoch_phase(config, e) in group]
    return members[0], len(members)

  def learning_rate(phase: str, kind: str, epoch: int, i: int, steps: int) -> float:
    if phase in ("clip", "roclip_match", "unimodal"):
      if phase == "unimodal":  # Phase A shares one schedule with Phase B (spec §3)
        start, peak = 0, c.in_lr
        total = (c.inmodal_warmup + c.multimodal_warmup) * steps
      else:
        start, count = phase_span(phase)
        peak, total = config.optim.learning_rate, count * steps
      return optim.phase_learning_rate((epoch - start) * steps + i, peak_lr=peak,
                                       warmup_steps=min(c.warmup_steps, total), total_steps=total)
    if phase == "filter":
      return float(c.filter_lr)
    if phase == "finetune":
      start, count = phase_span("finetune")
      total = count * steps
      return optim.phase_learning_rate((epoch - start) * steps + i, peak_lr=c.finetune_lr,
                                       warmup_steps=min(c.finetune_warmup_steps, total),
                                       total_steps=total)
    start, count = phase_span("safe")  # Phase C: half-cosine by epoch progress per pass
    peak = c.in_lr if kind == "unimodal" else c.cross_lr
    return exp.cosine(peak, (epoch - start + i / max(steps, 1)) / count)

  # --- State and shardings. ---------------------------------------------------------------------
  rng = jax.random.PRNGKey(config.seed)
  dim = int(config.model.embed_dim)  # with_defaults above wrote it if the config did not
  pool_names = {"roclip": ("text",), "safeclip": ("image", "text") if method == "safeclip"
                and c.unimodal_pool_size else ()}.get(method, ())
  pool_size = c.get("pool_size", c.get("unimodal_pool_size", 0))

  def make_pools(key) -> dict[str, pool_lib.Pool]:
    random_rows = c.get("pool_prefill", "captions") == "random"
    return {name: pool_lib.init_pool(pool_size, dim, prefill_random=random_rows,
                                     key=jax.random.fold_in(key, j), batch_size=bsz)
            for j, name in enumerate(pool_names)}

  def init(key):
    return steps_lib.create_state(model, tx, rng=key, image_shape=train.x.shape[1:],
                                  context_length=info["context_length"],
                                  pools=make_pools(jax.random.fold_in(key, 7)))

  abstract = jax.eval_shape(init, rng)
  repl = sharding_lib.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: repl, abstract)
  batch_sharding = sharding_lib.batch_sharding(mesh)

  # --- Compiled steps and encoders. ---------------------------------------------------------------
  compiled: dict[str, Any] = {}

  def step_fn(kind: str):
    if kind not in compiled:
      fn = steps_lib.make_step(model, tx, kind=kind, augment=bool(c.augment),
                               drop_overflow=bool(c.get("drop_overflow", False)),
                               clip_weight=c.get("clip_weight", 1.0),
                               inmodal_weight=c.get("inmodal_weight", 1.0),
                               aug_kwargs=augment_lib.chain(c.get("aug_chain", "cross_aug")))
      compiled[kind] = jax.jit(fn, in_shardings=(state_sharding, batch_sharding, repl),
                               out_shardings=(state_sharding, repl), donate_argnums=(0,))
    return compiled[kind]

  encoders = _Encoders(model, batch_size=config.train.eval_batch_size, sharding=batch_sharding)

  # --- Restore or initialise. ---------------------------------------------------------------------
  ckpt = checkpoint_lib.Checkpointer(os.path.join(run_dir, "checkpoints"),
                                     max_to_keep=config.train.max_checkpoints_to_keep)
  abstract_sharded = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sharding)
  host: dict[str, Any] = {"epoch": 0, "step": 0, "step_in_epoch": 0, "wall_time_s": 0.0,
                          "examples_seen": 0, "safe": None, "safe_fraction": None,
                          "split_history": []}
  restored_window: list = []
  if ckpt.latest_step() is not None:
    state, saved = ckpt.restore(abstract_sharded)
    restored_window = saved.pop("pending_metrics", [])
    host.update(saved)
  else:
    state = jax.jit(init, out_shardings=state_sharding)(rng)
    if method == "cleanclip" and c.pretrained_checkpoint:
      state = state.replace(params=_pretrained_params(c.pretrained_checkpoint, abstract_sharded))

  writer = metrics_lib.MetricsWriter(run_dir, resume_step=host["step"])
  timer = metrics_lib.Timer(host["wall_time_s"])
  progress = metrics_lib.Progress(total_steps=max(1, epochs * full_steps), initial=host["step"],
                                  mode=config.train.progress)
  window = metrics_lib.MetricsWindow(restored_window)  # carried through checkpoints

  def fetch_window() -> None:
    bad = window.fetch()
    if bad is not None:
      last = ckpt.latest_step()
      raise NonFiniteLossError(
          f"the contrastive loss became {bad} by step {host['step']} (epoch "
          f"{host['epoch']}); the last good checkpoint is "
          f"{'step ' + str(last) if last is not None else 'none'} in {ckpt.directory}. Lower "
          "config.optim.learning_rate (or the method's learning rates).")

  def flush() -> None:
    if not window:
      return
    fetch_window()
    mean = window.take_mean()
    writer.write(host["step"], "train", mean, epoch=host["epoch"])
    progress.update(host["step"], mean, 0.0)

  def save() -> None:
    fetch_window()
    host["wall_time_s"] = timer.total()
    ckpt.save(host["step"], state, to_json({**host, "pending_metrics": window.state()}))

  def batch_of(idx: np.ndarray, kind: str) -> dict[str, Any]:
    """The padded device batch of `idx` for a step of `kind`."""
    k = len(idx)
    pad = np.concatenate([idx, np.repeat(idx[:1], bsz - k)]) if k < bsz else idx
    first, second = exp.step_tokens(config, kind, train.extras["tokens"], views)
    mask = (np.arange(bsz) < k).astype(np.float32)
    host_batch = {"x": train.x[pad], "tokens": first[pad].astype(np.int32),
                  "tokens_aug": second[pad].astype(np.int32), "mask": mask}
    return sharding_lib.put_batch(host_batch, batch_sharding)

  def plan_epoch(epoch: int) -> tuple[str, list[tuple[np.ndarray, str]]]:
    """(phase, [(indices, step kind)]) of `epoch`; SafeCLIP's split comes from `host`."""
    phase = exp.epoch_phase(config, epoch)
    order = np.random.default_rng(np.random.SeedSequence([config.seed, 65, epoch]))
    if phase == "safe":
      safe = np.asarray(host["safe"], np.int64)
      risky = np.setdiff1d(np.arange(n), safe)
      return phase, ([(b, "unimodal") for b in exp.batches_of(order.permutation(risky), bsz,
                                                              drop_last=False)]
                     + [(b, "cross_clip") for b in exp.batches_of(order.permutation(safe), bsz,
                                                                  drop_last=False)])
    pool = clean_subset if phase == "finetune" else np.arange(n)
    return phase, [(b, _KIND_OF_PHASE[phase])
                   for b in exp.batches_of(order.permutation(pool), bsz, drop_last=True)]

  def start_of_epoch(epoch: int) -> None:
    """Once per epoch, before its first step: pool pre-fill, SafeCLIP split, fresh optimizer."""
    nonlocal state
    phase = exp.epoch_phase(config, epoch)
    fill = {"roclip_match": ("text",), "unimodal": pool_names}.get(phase, ())
    if c.get("pool_prefill") == "captions" and fill and int(state.pools[fill[0]].filled) == 0:
      r = np.random.default_rng(np.random.SeedSequence([config.seed, 66]))
      rows = np.sort(r.choice(n, size=min(pool_size, n), replace=False))
      emb = {"text": encoders("encode_text", state.params, train.extras["tokens"][rows]),
             "image": encoders("encode_image", state.params, train.x[rows]) if "image" in fill
             else None}
      pools = dict(state.pools)
      for name in fill:
        pools[name] = pool_lib.init_pool(pool_size, dim, prefill=jnp.asarray(emb[name]),
                                         batch_size=bsz)
      state = jax.device_put(state.replace(pools=pools), state_sharding)
    if phase == "safe":
      scores = encoders.scores(state.params, train.x, train.extras["tokens"])
      r = host["safe_fraction"]
      safe, _, post, frac = safeclip.safe_risky_split(scores, safe_fraction=r,
                                                      threshold=c.safe_threshold, seed=config.seed)
      host["safe"] = safe.tolist()
      host["safe_fraction"] = safeclip.next_safe_fraction(
          max(frac, 1.0 / n), update=c.safe_fraction_update, cap=c.safe_fraction_cap)
      stats = {"safe_fraction": frac, "safe_count": len(safe),
               "poisons_in_safe": int(is_poison[safe].sum()), "poisons": int(is_poison.sum()),
               "mean_score_poison": float(scores[is_poison].mean()) if is_poison.any() else None,
               "mean_score_clean": float(scores[~is_poison].mean())}
      host["split_history"].append({"epoch": epoch, **stats})
      writer.write(host["step"], "safeclip_split", stats, epoch=epoch)
    if phase == "finetune" and epoch == phase_span("finetune")[0] and c.pretrain_epochs > 0:
      fresh = tx.init(state.params)
      state = jax.device_put(state.replace(opt_state=fresh), state_sharding)

  interrupted: list[bool] = []
  previous = signal.getsignal(signal.SIGINT)
  try:
    signal.signal(signal.SIGINT, lambda s, f: interrupted.append(True))
  except ValueError:  # not the main thread
    previous = None

  # --- The loop. ----------------------------------------------------------------------------------
  try:
    done = False
    while host["epoch"] < epochs and not done:
      epoch = host["epoch"]
      if host["step_in_epoch"] == 0:
        start_of_epoch(epoch)
      phase, plan = plan_epoch(epoch)
      if exp.eda_captions(config) == "epoch" and c.augment:  # RoCLIP: fresh EDA captions
        views = exp.caption_views(config, data, train, epoch=epoch)
      for i in range(host["step_in_epoch"], len(plan)):
        idx, kind = plan[i]
        lr = learning_rate(phase, kind, epoch, i, len(plan))
        state, metrics = step_fn(kind)(state, batch_of(idx, kind), np.float32(lr))
        window.append(metrics)
        host["step"] += 1
        host["step_in_epoch"] = i + 1
        host["examples_seen"] += len(idx)
        if host["step"] % config.train.log_every_steps == 0:
          flush()
        if host["step"] % config.train.checkpoint_every_steps == 0 or interrupted:
          save()
        if interrupted:
          raise KeyboardInterrupt(f"interrupted at step {host['step']}; checkpoint saved, rerun "
                                  "the same command to resume")
        if config.train.max_steps and host["step"] >= config.train.max_steps:
          done = True
          break
      if done and host["step_in_epoch"] < len(plan):
        break
      flush()
      host["epoch"] += 1
      host["step_in_epoch"] = 0
      if host["epoch"] % config.train.eval_every_epochs == 0 and host["epoch"] < epochs:
        writer.write(host["step"], "eval", _evaluate(config, data, attack_eval, encoders, state,
                                                     with_probe=False), epoch=host["epoch"])
    flush()
    save()
  finally:
    progress.close()
    if previous is not None:
      signal.signal(signal.SIGINT, previous)

  # --- Results. -----------------------------------------------------------------------------------
  evals = _evaluate(config, data, attack_eval, encoders, state, with_probe=True)
  results: dict[str, Any] = {
      "config_hash": config_lib.config_hash(config), "config_name": config.name,
      "seed": config.seed, "method": method, "dataset": config.data.name,
      "steps": host["step"], "epochs": host["epoch"], "wall_time_s": timer.total(),
      "examples_seen": host["examples_seen"], "train_size": n,
      "poison_count": poison_record["poison_count"], "poison_ratio": poison_record["poison_ratio"],
      "poison": poison_record, **evals}
  if method == "safeclip":
    results["safeclip_splits"] = host["split_history"]
  if method == "cleanclip":
    results["clean_subset_size"] = int(len(clean_subset))
  writer.write(host["step"], "results", {k: v for k, v in results.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)})
  writer.close()
  run_dir_lib.write_results(run_dir, to_json(results))
  ckpt.close()
  return results


def _evaluate(config, data, attack_eval, encoders: _Encoders, state, *, with_probe: bool):
  params = state.params
  return exp.evaluate(config, data, attack_eval,
                      encode_image=lambda x: encoders("encode_image", params, x),
                      encode_text=lambda t: encoders("encode_text", params, t),
                      image_features=lambda x: encoders("image_features", params, x),
                      with_probe=with_probe)


def _pretrained_params(path: str, abstract_sharded) -> Any:
  """The params of the latest checkpoint of a finished `clip` run directory (or its
  checkpoints/ directory), restored onto this config's state structure."""
  directory = path if os.path.basename(os.path.normpath(path)) == "checkpoints" else \
      os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    raise ConfigError(f"config.contrastive.pretrained_checkpoint={path!r} holds no checkpoints/ "
                      "directory (give a finished clip run directory)")
  source = checkpoint_lib.Checkpointer(directory, max_to_keep=1000)
  try:
    if source.latest_step() is None:
      raise ConfigError(f"config.contrastive.pretrained_checkpoint={path!r} has no checkpoint")
    state, _ = source.restore(abstract_sharded)
  finally:
    source.close()
  return state.params
