"""Every trainer family resumes exactly: a run stopped mid-training (SIGINT, a simulated kill
that tears a metrics record, a real SIGKILL) and rerun in the same run directory ends with the
results and the metrics.jsonl records of an uninterrupted run, timing fields aside.

The reference of each family is an uninterrupted run of the same config in another workdir.
Cadences are shortened by config overrides so the interesting boundaries fall inside the smoke
runs; the interrupted run and its rerun always use the identical config (one run id)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from robustdata import config_lib, runner, validation
from robustdata.train import checkpoint as checkpoint_lib
from robustdata.train import driver
from robustdata.train import metrics as metrics_lib
from tests.conftest import REPO, run_python, sigint_after


@dataclasses.dataclass(frozen=True)
class Family:
  """A smoke config, its cadence overrides and where each case stops it."""

  spec: str
  overrides: tuple[tuple[str, Any], ...]
  steps_per_epoch: int
  sigint_in_epoch: int       # neither a log, a checkpoint nor (but for PDE) an epoch's end
  sigint_at_log: int         # a log step before the next checkpoint
  crash_writing: tuple[str, int]  # (split, step) of a record written after the last checkpoint


FAMILIES = {
    # 20 steps per epoch; logs every 3, checkpoints every 5. The torn record is the val record
    # of step 20, written after the checkpoint of step 20 (and after train@20, also dropped).
    "supervised": Family("configs/baselines/erm_digits.py:smoke",
                         (("train.log_every_steps", 3), ("train.checkpoint_every_steps", 5)),
                         20, 8, 12, ("val", 20)),
    # 6 steps per epoch; CREST selects from epoch 1 (policy.start_epoch = 1).
    "crest": Family("configs/crest/digits.py:smoke",
                    (("train.log_every_steps", 3), ("train.checkpoint_every_steps", 4)),
                    6, 7, 9, ("val", 6)),
    # Full-batch GD: one step per epoch, +50 examples at epochs 20 and 25, evaluation every 10
    # epochs. Even steps log inside the step loop (before a signal's checkpoint), odd ones at
    # the epoch's end (after it); checkpoints every 7.
    "pde": Family("configs/pde/synthetic_pde.py:smoke",
                  (("train.log_every_steps", 2), ("train.checkpoint_every_steps", 7)),
                  1, 23, 12, ("val", 20)),
    # Poisson sampling, 10 steps per epoch; privacy and val records at each epoch's end.
    "dpsgd": Family("configs/dpsgd/digits.py:smoke",
                    (("train.log_every_steps", 3), ("train.checkpoint_every_steps", 4)),
                    10, 7, 15, ("val", 10)),
    # The contrastive trainer: 4 steps per epoch, 2 epochs.
    "clip": Family("configs/clip/shapes.py:smoke",
                   (("train.log_every_steps", 2), ("train.checkpoint_every_steps", 5)),
                   4, 3, 6, ("train", 8)),
}
SLOW = ("dpsgd", "clip")  # seconds per run; the others well under one


class _Killed(Exception):
  """Stands in for a SIGKILL: the run stops where it is, without a checkpoint."""


def _config(family: Family, *extra: tuple[str, Any]):
  config = validation.load_config_file(os.path.join(REPO, family.spec))
  with config.unlocked():
    config.train.progress = "none"
    for dotted, value in family.overrides + extra:
      section, _, field = dotted.rpartition(".")
      config[section][field] = value
  return config


def _untimed(record: dict) -> dict:
  return {k: v for k, v in record.items() if not runner.is_nondeterministic(k)}


def _outcome(run_dir: str) -> tuple[dict, list[dict]]:
  """(deterministic results.json entries, every metrics.jsonl record without timings)."""
  with open(os.path.join(run_dir, "results.json")) as f:
    results = _untimed(json.load(f))
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    records = [_untimed(json.loads(line)) for line in f]
  return results, records


def _order(records: list[dict]) -> list[tuple[int, str]]:
  return [(r["step"], r["split"]) for r in records]


def _assert_same(expected: tuple[dict, list[dict]], got: tuple[dict, list[dict]]) -> None:
  rows = runner.compare(expected[0], got[0])
  assert all(same for *_, same in rows), [r for r in rows if not r[3]]
  assert _order(got[1]) == _order(expected[1])  # no record missing, duplicated or moved
  for i, (a, b) in enumerate(zip(expected[1], got[1])):
    assert a == b, f"record {i} differs: expected {a}, got {b}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted outcome of each family (run once, on first use)."""
  cache = {}

  def get(name: str) -> tuple[dict, list[dict]]:
    if name not in cache:
      run_dir, _ = runner.run(_config(FAMILIES[name]), str(tmp_path_factory.mktemp(name)))
      cache[name] = _outcome(run_dir)
    return cache[name]

  return get


@pytest.fixture
def saves(monkeypatch):
  """Records (step, host state) of every checkpoint the test's runs save."""
  seen, save = [], checkpoint_lib.Checkpointer.save

  def recording_save(self, step, state, host):
    seen.append((int(step), host))
    return save(self, step, state, host)

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", recording_save)
  return seen


def _kill_while_writing(patch: pytest.MonkeyPatch, split: str, step: int) -> None:
  """Stops the run half way through writing the (split, step) record: the file ends with the
  first half of that line, as after a kill inside the write."""
  write = metrics_lib.MetricsWriter.write

  def torn_write(self, at, kind, metrics, **extra):
    if (kind, int(at)) != (split, step):
      return write(self, at, kind, metrics, **extra)
    start = self.offset()
    write(self, at, kind, metrics, **extra)
    os.truncate(self.path, start + (self.offset() - start) // 2)
    raise _Killed(f"killed while writing the {split} record of step {step}")

  patch.setattr(metrics_lib.MetricsWriter, "write", torn_write)


def _family_params(names):
  return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _interrupt_and_resume(family: Family, workdir: str, k: int) -> str:
  """Runs `family` until a SIGINT during step k stops it, then reruns it in the same workdir;
  the run directory."""
  config = _config(family)
  with pytest.MonkeyPatch.context() as patch:
    sigint_after(patch, k)
    with pytest.raises(driver.Interrupted, match=f"at step {k}; checkpoint saved"):
      runner.run(config, workdir)
  run_dir, _ = runner.run(config, workdir)
  assert os.path.basename(run_dir) == config_lib.run_id(config_lib.resolve(config))
  return run_dir


@pytest.mark.parametrize("name", _family_params(FAMILIES))
def test_sigint_inside_an_epoch_resumes_exactly(name, reference, saves, tmp_path):
  """The signal's checkpoint carries a partial logging window and the epoch's position."""
  family, expected = FAMILIES[name], reference(name)
  k, train = family.sigint_in_epoch, _config(family).train
  assert k % train.log_every_steps and k % train.checkpoint_every_steps
  saves.clear()
  run_dir = _interrupt_and_resume(family, str(tmp_path), k)
  (host,) = [h for s, h in saves if s == k]  # the signal's checkpoint
  assert host["pending_metrics"]  # a partial logging window crosses the checkpoint
  if family.steps_per_epoch > 1:  # full-batch PDE has no step inside an epoch
    assert 0 < host["step_in_epoch"] < family.steps_per_epoch
  _assert_same(expected, _outcome(run_dir))


@pytest.mark.parametrize("name", _family_params(FAMILIES))
def test_sigint_after_a_log_flush_resumes_exactly(name, reference, saves, tmp_path):
  """Step k wrote its record, then the signal's checkpoint (off the checkpoint cadence)."""
  family, expected = FAMILIES[name], reference(name)
  k, train = family.sigint_at_log, _config(family).train
  assert k % train.log_every_steps == 0 and k % train.checkpoint_every_steps
  saves.clear()
  run_dir = _interrupt_and_resume(family, str(tmp_path), k)
  (host,) = [h for s, h in saves if s == k]  # the signal's checkpoint
  assert not host["pending_metrics"]  # step k's record was written before the save
  _assert_same(expected, _outcome(run_dir))


@pytest.mark.parametrize("name", _family_params(FAMILIES))
def test_sigint_then_a_torn_metrics_line_resumes_exactly(name, reference, tmp_path):
  """A partial line appended after the checkpoint's offset (a kill inside a write) is dropped."""
  family, expected = FAMILIES[name], reference(name)
  k = family.sigint_in_epoch
  config = _config(family)
  with pytest.MonkeyPatch.context() as patch:
    sigint_after(patch, k)
    with pytest.raises(driver.Interrupted, match=f"at step {k};"):
      runner.run(config, str(tmp_path))
  path = os.path.join(tmp_path, config_lib.run_id(config_lib.resolve(config)), "metrics.jsonl")
  with open(path, "a") as f:
    f.write(f'{{"step": {k + 1}, "spl')
  run_dir, _ = runner.run(config, str(tmp_path))
  _assert_same(expected, _outcome(run_dir))


@pytest.mark.parametrize("name", _family_params(FAMILIES))
def test_kill_while_writing_a_record_resumes_exactly(name, reference, saves, tmp_path):
  """Complete records written after the last checkpoint, and the torn one, are dropped."""
  family, expected = FAMILIES[name], reference(name)
  split, step = family.crash_writing
  config = _config(family)
  saves.clear()
  with pytest.MonkeyPatch.context() as patch:
    _kill_while_writing(patch, split, step)
    with pytest.raises(_Killed):
      runner.run(config, str(tmp_path))
  run_dir = os.path.join(tmp_path, config_lib.run_id(config_lib.resolve(config)))
  with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
    data = f.read()
  complete = data.rfind(b"\n") + 1
  assert complete < len(data)  # torn last line
  last_saved = saves[-1][1]
  assert last_saved["step"] <= step
  assert complete > last_saved["metrics_offset"]  # whole records the rerun must drop
  resumed, _ = runner.run(config, str(tmp_path))
  assert resumed == run_dir
  _assert_same(expected, _outcome(run_dir))


def test_kill_while_writing_the_results_record_resumes_exactly(reference, tmp_path):
  """The kill lands after the last checkpoint (step 40, saved in the step loop, before the
  epoch's end): the rerun restores it and redoes the epoch's end and the results record once."""
  family = FAMILIES["supervised"]
  config = _config(family)
  with pytest.MonkeyPatch.context() as patch:
    _kill_while_writing(patch, "results", 40)
    with pytest.raises(_Killed):
      runner.run(config, str(tmp_path))
  run_dir, _ = runner.run(config, str(tmp_path))
  _assert_same(reference("supervised"), _outcome(run_dir))


# --- A real SIGKILL of `python -m experiments.main`. ---------------------------------------------

KILL_OVERRIDES = (("train.epochs", 6),)  # 120 steps: long enough to be killed part way


def _command(family: Family, workdir: str) -> list[str]:
  return ["-m", "experiments.main", f"--config={family.spec}", f"--workdir={workdir}",
          "--config.train.progress=none",
          *(f"--config.{k}={v}" for k, v in family.overrides + KILL_OVERRIDES)]


def _intact_checkpoints(run_dir: str) -> list[int]:
  directory = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(p) for p in os.listdir(directory)
                if p.isdigit() and os.path.exists(os.path.join(directory, p, "integrity.json")))


def _logged_steps(run_dir: str) -> list[int]:
  try:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
      lines = f.read().split("\n")[:-1]  # complete lines only
  except FileNotFoundError:
    return []
  return [json.loads(line)["step"] for line in lines]


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_exactly(tmp_path):
  """`experiments.main` killed in its second epoch, records past its newest checkpoint; rerun
  with the same command line, it matches an uninterrupted run of the same config."""
  family = FAMILIES["supervised"]
  config = _config(family, *KILL_OVERRIDES)
  ref_dir, _ = runner.run(config, str(tmp_path / "ref"))
  workdir = str(tmp_path / "killed")
  run_dir = os.path.join(workdir, os.path.basename(ref_dir))  # the same config hash
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO,
         "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  with open(tmp_path / "killed.log", "w") as out:
    proc = subprocess.Popen([sys.executable, *_command(family, workdir)], cwd=REPO, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 300
      while time.time() < deadline:  # kill once records follow the newest checkpoint
        assert proc.poll() is None, (f"the run ended before it was killed (run directories: "
                                     f"{os.listdir(workdir) if os.path.isdir(workdir) else []}):\n"
                                     + (tmp_path / "killed.log").read_text()[-3000:])
        saved, logged = _intact_checkpoints(run_dir), _logged_steps(run_dir)
        if saved and logged and saved[-1] >= 25 and max(logged) > saved[-1]:  # in the second epoch
          break
        time.sleep(0.005)
      proc.send_signal(signal.SIGKILL)
    finally:
      proc.kill()
      code = proc.wait(timeout=60)
  assert code == -signal.SIGKILL
  assert not os.path.exists(os.path.join(run_dir, "results.json"))
  logged = _logged_steps(run_dir)
  assert _intact_checkpoints(run_dir)[-1] < max(logged) < 120  # records the rerun must drop
  run_python(_command(family, workdir))
  _assert_same(_outcome(ref_dir), _outcome(run_dir))
