"""The 'contrastive' trainer end to end: every method's smoke config runs through
`runner.run` and writes the results contract; the attack puts exactly N poisons in the
training data; an interrupted SafeCLIP run resumes to the same results; bad configs fail
with a ConfigError naming the field."""

import importlib
import json
import os
import signal
import types

import jax
import ml_collections
import numpy as np
import pytest

from robustdata import runner
from robustdata.contrastive import config as contrastive_config
from robustdata.contrastive.trainer import ContrastiveTask, train_and_evaluate_contrastive
from robustdata.data import sources
from robustdata.poisoning import clip_data
from robustdata.registry import ConfigError
from robustdata.train import driver
from robustdata.train import metrics as metrics_lib

CONTRACT = ("config_hash", "config_name", "seed", "method", "dataset", "steps", "wall_time_s",
            "examples_seen", "zero_shot_accuracy", "linear_probe_accuracy", "targeted_asr",
            "backdoor_asr", "poison_count")


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
  """The runs here share one tiny model, so they share compiled programs through JAX's
  persistent cache (a fresh directory, restored afterwards): each program compiles once."""
  from jax._src import compilation_cache  # reset_cache(): the cache is checked once per process

  keys = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("jax_cache")),
          "jax_persistent_cache_min_compile_time_secs": 0.0,
          "jax_persistent_cache_min_entry_size_bytes": 0}
  old = {k: getattr(jax.config, k) for k in keys}
  compilation_cache.reset_cache()
  for k, v in keys.items():
    jax.config.update(k, v)
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()


def _tiny(method: str):
  """The method's smoke config made smaller still (seconds of compute, mostly compiles)."""
  config = importlib.import_module(f"configs.{method}.shapes").get_config("smoke")
  with config.unlocked():
    config.data.num_train = 128
    config.data.image_size = 16
    config.data.context_length = 12
    config.model.cnn_widths = (8,)
    config.model.embed_dim = 16
    config.model.text_width = 16
    config.train.batch_size = 32
    config.train.eval_batch_size = 32
    config.poison.count = 6
    config.poison.num_targets = 2
    config.poison.patch_size = 4
    c = config.contrastive
    for field in ("pool_size", "unimodal_pool_size"):
      if field in c:
        c[field] = 48
    if "clean_subset_size" in c:
      c.clean_subset_size = 64
    if method == "safeclip":  # two Phase C epochs, a warm-up spanning both, a record per step
      config.train.epochs = 4
      config.train.log_every_steps = 1
      c.warmup_steps = 7
  return config


@pytest.fixture(scope="module")
def safeclip_run(tmp_path_factory):
  """One uninterrupted SafeCLIP smoke run (4 epochs: unimodal, filter, two safe/risky splits)."""
  return runner.run(_tiny("safeclip"), str(tmp_path_factory.mktemp("safeclip")))


# RoCLIP and CleanCLIP smoke runs are slow-marked to keep tests/contrastive within ~3 minutes;
# `pytest -m slow tests/contrastive` runs them.
@pytest.mark.parametrize("method", [
    "clip", "safeclip", pytest.param("roclip", marks=pytest.mark.slow),
    pytest.param("cleanclip", marks=pytest.mark.slow)])
def test_smoke_run_writes_the_results_contract(method, tmp_path, request):
  if method == "safeclip":
    run_dir, results = request.getfixturevalue("safeclip_run")
  else:
    run_dir, results = runner.run(_tiny(method), str(tmp_path))
  with open(os.path.join(run_dir, "results.json")) as f:
    on_disk = json.load(f)
  assert set(CONTRACT) <= set(on_disk) and on_disk["method"] == method
  assert os.path.exists(os.path.join(run_dir, "metrics.jsonl"))
  assert os.listdir(os.path.join(run_dir, "checkpoints"))
  for key in ("zero_shot_accuracy", "linear_probe_accuracy", "targeted_asr", "backdoor_asr"):
    assert 0.0 <= results[key] <= 1.0, (key, results[key])
  # Both attacks, 6 poisons each, are in the trained data (3 per target image).
  assert results["poison_count"] == 12 and results["train_size"] == 128 + 12
  assert results["poison"]["targeted"]["poison_count"] == 6
  assert results["poison"]["targeted"]["poisons_per_target"] == 3
  assert results["poison"]["backdoor"]["poison_count"] == 6
  assert results["steps"] > 0 and results["examples_seen"] >= 32 * results["steps"] // 2
  if method == "safeclip":
    split = results["safeclip_splits"][0]
    assert split["poisons"] == 12 and 0 <= split["poisons_in_safe"] <= 12
  if method == "cleanclip":
    assert results["clean_subset_size"] == 64


def test_attack_puts_exactly_n_poisons_in_the_train_split():
  config = _tiny("clip")
  with config.unlocked():
    config.poison.count = 0
    config.poison.rate = 0.1          # floor(0.1 * 128) = 12 per attack, 6 per target
  data = sources.load(config.data)
  train, record, attack_eval = clip_data.poison_train(config, data)
  flags = train.extras["poison"].astype(bool)
  assert record["poison_count"] == 24 == flags.sum() and len(train) == 128 + 24
  assert record["targeted"]["poisons_per_target"] == 6
  np.testing.assert_array_equal(train.x[:128], data.train.x)
  target_ids = set(record["targeted"]["target_ids"])
  assert target_ids <= set(data.val.ids.tolist()) and not target_ids & set(train.ids.tolist())
  assert len(attack_eval["targeted"]["x"]) == 2 and len(attack_eval["backdoor"]["x"]) == len(data.test)
  with config.unlocked():
    config.poison.kind = "none"
  clean, record, _ = clip_data.poison_train(config, data)
  assert record["poison_count"] == 0 and len(clean) == 128


def test_interrupted_safeclip_resumes_to_the_same_results(safeclip_run, tmp_path, monkeypatch):
  config = _tiny("safeclip")
  full = safeclip_run[1]
  steps = full["steps"]
  part_dir = str(tmp_path / "resumed")
  append, count = metrics_lib.MetricsWindow.append, [0]

  def interrupt_after(self, metrics):  # SIGINT inside the safe/risky epoch, after its split
    append(self, metrics)
    count[0] += 1
    if count[0] == steps - 2:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", interrupt_after)
  with pytest.raises(driver.Interrupted, match=f"at step {steps - 2}; checkpoint saved"):
    train_and_evaluate_contrastive(config, part_dir)
  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", append)
  resumed = train_and_evaluate_contrastive(config, part_dir)
  rows = runner.compare(json.loads(json.dumps(full)), json.loads(json.dumps(resumed)))
  assert all(same for *_, same in rows), [r for r in rows if not r[3]]
  with open(os.path.join(safeclip_run[0], "metrics.jsonl")) as f:
    expected = [_untimed(json.loads(line)) for line in f]
  with open(os.path.join(part_dir, "metrics.jsonl")) as f:
    got = [_untimed(json.loads(line)) for line in f]
  assert got == expected  # the resumed log equals the uninterrupted one


def test_safeclip_phase_c_passes_warm_up_over_their_own_steps(safeclip_run):
  """Each Phase C pass (unimodal on the risky pairs, then CLIP on the safe ones) ramps its LR
  linearly over its own first warmup_steps steps, across epochs, times the half-cosine by
  epoch progress: every logged Phase C LR against a loop that counts each pass's steps."""
  run_dir, results = safeclip_run
  config = _tiny("safeclip")
  c, bsz = config.contrastive, config.train.batch_size
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  logged = {r["step"]: r["lr"] for r in records if r.get("split") == "train" and "lr" in r}
  splits = results["safeclip_splits"]
  start = c.inmodal_warmup + c.multimodal_warmup
  n = results["train_size"]
  step = (start * n) // bsz  # Phases A and B: whole batches only
  taken = {"unimodal": 0, "cross_clip": 0}
  checked = 0
  for e, split in enumerate(splits):
    assert split["epoch"] == start + e
    kinds = (["unimodal"] * -(-(n - split["safe_count"]) // bsz)
             + ["cross_clip"] * -(-split["safe_count"] // bsz))
    for i, kind in enumerate(kinds):
      peak = c.in_lr if kind == "unimodal" else c.cross_lr
      t = (e + i / len(kinds)) / len(splits)
      want = 0.5 * peak * (1 + np.cos(np.pi * t)) * min(1.0, (taken[kind] + 1) / c.warmup_steps)
      taken[kind] += 1
      step += 1
      np.testing.assert_allclose(logged[step], want, rtol=1e-6, err_msg=f"step {step} {kind}")
      checked += 1
  assert checked == results["steps"] - (start * n) // bsz and taken["cross_clip"] > 0
  assert any(k >= c.warmup_steps for k in taken.values())  # past the ramp, and inside it


def _ablated_task(scores: np.ndarray, **ablations):
  """A ContrastiveTask's SafeCLIP state with fixed pair scores (nothing trains), for `_split`
  and `plan_epoch`."""
  n = len(scores)
  return types.SimpleNamespace(
      config=ml_collections.ConfigDict(dict(seed=0, method="safeclip", train=dict(epochs=9),
                                            contrastive=dict(inmodal_warmup=1, multimodal_warmup=1,
                                                             **ablations))),
      c=ml_collections.ConfigDict(dict(safe_threshold=0.9, safe_fraction_update=0.01,
                                       safe_fraction_cap=0.85)),
      n=n, bsz=8, is_poison=np.arange(n) % 10 == 0, safe_fraction=0.25, split_history=[],
      attack_rows={}, state=types.SimpleNamespace(params=None),
      encoders=types.SimpleNamespace(scores=lambda *_: scores),
      train=types.SimpleNamespace(x=None, extras={"tokens": None}),
      driver=types.SimpleNamespace(writer=types.SimpleNamespace(write=lambda *a, **k: None)))


@pytest.mark.parametrize("safe_set", [None, "uniform"])
def test_safeclip_ablation_uniform_safe_set(safe_set):
  """safe_set='uniform': the split keeps the size the scores chose and draws the pairs at random;
  unset (the method), the safe set is the top-scored pairs."""
  scores = np.random.default_rng(0).normal(size=80)
  task = _ablated_task(scores, safe_set=safe_set)
  split = ContrastiveTask._split  # pylint: disable=protected-access
  split(task, types.SimpleNamespace(epoch=3, step=0))
  top = np.sort(np.argsort(-scores)[:20])
  assert len(task.safe) == 20 and task.split_history[0]["safe_count"] == 20
  assert (task.safe == top.tolist()) == (safe_set is None)


@pytest.mark.parametrize("risky_pass", [None, False])
def test_safeclip_ablation_without_the_risky_pass(risky_pass):
  """risky_pass=False: a Phase C epoch is the CLIP pass on the safe pairs alone."""
  task = _ablated_task(np.zeros(40), risky_pass=risky_pass)
  task.safe = list(range(0, 40, 3))  # 14 safe, 26 risky pairs
  phase, plan = ContrastiveTask.plan_epoch(task, 2)
  kinds = [kind for _, kind in plan]
  assert phase == "safe" and kinds.count("cross_clip") == 2
  assert kinds.count("unimodal") == (0 if risky_pass is False else 4)
  assert sorted(np.concatenate([b for b, k in plan if k == "cross_clip"])) == task.safe


def _untimed(record: dict) -> dict:
  return {k: v for k, v in record.items() if not runner.is_nondeterministic(k)}


@pytest.mark.parametrize("field,value,match", [
    ("method", "moco", "config.method='moco'"),
    ("contrastive.pool_size", 4, "config.contrastive.pool_size=4"),
    ("contrastive.break_epoch", 0, "config.contrastive.break_epoch=0"),
    ("poison.kind", "label_flip", "config.poison.kind='label_flip'"),
    ("poison.trigger", "rainbow", "config.poison.trigger='rainbow'"),
    ("optim.name", "sgd", "config.optim.name='sgd'"),
])
def test_bad_config_fields_are_named(field, value, match):
  config = _tiny("roclip")
  with config.unlocked():
    if field == "poison.trigger":
      config.poison.kind = "backdoor"
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
  with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("(", r"\(")):
    contrastive_config.validate(config, num_devices=1)


@pytest.mark.slow
def test_cleanclip_fine_tunes_its_upstream_clip_stage(tmp_path):
  """config.pretrained: the runner trains the CLIP stage first in the same workdir, and
  CleanCLIP starts from its final parameters, exactly as from pretrained_checkpoint=<its dir>."""
  config = _tiny("cleanclip")
  with config.unlocked():
    config.train.epochs, config.contrastive.pretrain_epochs = 1, 0
    config.pretrained = _tiny("clip")
  run_dir, staged = runner.run(config, str(tmp_path / "staged"))
  stage_dir = runner.stage_dir(config, "pretrained", run_dir)
  assert os.path.dirname(stage_dir) == os.path.dirname(run_dir)
  assert os.path.exists(os.path.join(stage_dir, "results.json"))
  with config.unlocked():
    del config["pretrained"]
    config.contrastive.pretrained_checkpoint = stage_dir
  path_dir, from_path = runner.run(config, str(tmp_path / "path"))
  for key in ("zero_shot_accuracy", "linear_probe_accuracy", "targeted_asr", "backdoor_asr",
              "steps", "examples_seen"):
    assert staged[key] == from_path[key], key
  # The training losses match to the bit (a fresh initialisation would not).
  def train_losses(directory):
    with open(os.path.join(directory, "metrics.jsonl")) as f:
      return [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]
  losses = [train_losses(d) for d in (run_dir, path_dir)]
  assert losses[0] and losses[0] == losses[1]
  with open(os.path.join(run_dir, "config.json")) as f:
    assert json.load(f)["pretrained"]["method"] == "clip"


def _refused(config, match: str) -> None:
  with pytest.raises(ConfigError, match=match):
    contrastive_config.validate(config, num_devices=1)


def test_cleanclip_stage_is_a_clip_run_of_the_same_model():
  config = _tiny("cleanclip")
  with config.unlocked():
    config.contrastive.pretrain_epochs = 0
    config.pretrained = _tiny("roclip")
  _refused(config, r"config.pretrained: trainer='contrastive', method='roclip'.*allowed: "
           r"trainer 'contrastive', method 'clip'")
  with config.unlocked():
    config.pretrained = _tiny("clip")
    config.pretrained.model.embed_dim = 24
  _refused(config, r"config.pretrained.model differs from config.model in \['embed_dim'\]")
  with config.unlocked():
    config.pretrained.model.embed_dim = config.model.embed_dim
  contrastive_config.validate(config, num_devices=1)
  with config.unlocked():
    config.contrastive.pretrain_epochs = 1
  _refused(config, "set exactly one of.*config.pretrained")
  clip = _tiny("clip")
  with clip.unlocked():
    clip.pretrained = _tiny("clip")
  _refused(clip, "config.pretrained is CleanCLIP's upstream clip stage; method 'clip' takes none")


def test_safeclip_needs_a_filtering_epoch_and_cleanclip_one_source():
  config = _tiny("safeclip")
  with config.unlocked():
    config.train.epochs = 2
  with pytest.raises(ConfigError, match="config.train.epochs=2"):
    contrastive_config.validate(config, num_devices=1)
  config = _tiny("cleanclip")
  with config.unlocked():
    config.contrastive.pretrained_checkpoint = "/nowhere"
  with pytest.raises(ConfigError, match="pretrained_checkpoint"):
    contrastive_config.validate(config, num_devices=1)
  with config.unlocked():
    config.contrastive.unknown_knob = 1
  with pytest.raises(ConfigError, match="config.contrastive.unknown_knob"):
    contrastive_config.validate(config, num_devices=1)
