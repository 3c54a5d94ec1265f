"""Two JAX processes on localhost (2 fake CPU devices each, gloo collectives, a local
coordinator) against one process with 4 fake devices: the same global batches and mesh, so
the results agree to float32 tolerance. Covers per-host input (each process feeds its own
rows), full-dataset probes gathered across processes (CRAIG's proxies, CLIP's encoders),
process-0-only writes, orbax saves by both processes, and a SIGTERM to one process that stops
both at the same step, then a resume of both that ends with the uninterrupted results."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest

from robustdata import runner
from tests.conftest import REPO, fake_devices_flags, run_python

pytestmark = pytest.mark.slow

# CRAIG reselects from proxies of the whole train split at every epoch's start (7 steps per
# epoch at batch 40, 2 epochs); logs every 2 steps and checkpoints every 4, so a stop at step
# 5 crosses a partial logging window and the epoch-1 selection runs after the resume.
CRAIG = ("--config=configs/craig/digits.py:smoke", "--config.train.batch_size=40",
         "--config.train.log_every_steps=2", "--config.train.checkpoint_every_steps=4",
         "--config.train.progress=log")
CLIP = ("--config=configs/clip/shapes.py:smoke", "--config.train.progress=log")
STOP_AT = 5
# Devices per process: more than one, so each process splits its rows over local devices too.
# (4 each against one process of 8 took this file 181 s instead of 139 s, one pytest process.)
LOCAL_DEVICES = 2
RTOL, ATOL = 1e-5, 1e-6  # float32: the cross-process all-reduces sum in another order

# Process 1 sends itself SIGTERM while step STOP_AT runs (a preemption notice reaching one
# host); process 0 gets no signal and must stop at the same step.
_SIGTERM_ONE = """
import os, signal, sys
from absl import app
from experiments import main
from robustdata.train import metrics
append, seen = metrics.MetricsWindow.append, [0]
def append_then_signal(self, step_metrics):
  append(self, step_metrics)
  seen[0] += 1
  if seen[0] == {step} and os.environ["JAX_PROCESS_ID"] == "1":
    os.kill(os.getpid(), signal.SIGTERM)
metrics.MetricsWindow.append = append_then_signal
sys.argv = ["main", *{args!r}]
app.run(main.main, flags_parser=main.parse_flags)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(argv: list[str], *, timeout: int = 400) -> list[tuple[int, str, str]]:
  """Runs `python <argv>` as processes 0 and 1 of one JAX job: (returncode, stdout, stderr)."""
  port, procs = _free_port(), []
  for index in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index), JAX_INITIALIZATION_TIMEOUT="120",
               XLA_FLAGS=fake_devices_flags(LOCAL_DEVICES),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs.append(subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  out = []
  try:
    for proc in procs:
      stdout, stderr = proc.communicate(timeout=timeout)
      out.append((proc.returncode, stdout, stderr))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return out


def _check_ok(outs) -> None:
  for index, (code, stdout, stderr) in enumerate(outs):
    assert code == 0, f"process {index} exited {code}:\n{stdout[-2000:]}\n{stderr[-4000:]}"


def _run_dir(workdir: str) -> str:
  (name,) = os.listdir(workdir)
  return os.path.join(workdir, name)


def _outcome(run_dir: str) -> tuple[dict, list[dict]]:
  """(results.json, metrics.jsonl records), timing fields dropped."""
  untimed = lambda r: {k: v for k, v in r.items() if not runner.is_nondeterministic(k)}
  with open(os.path.join(run_dir, "results.json")) as f:
    results = untimed(json.load(f))
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    return results, [untimed(json.loads(line)) for line in f]


def _close(a, b, where: str) -> None:
  """Equal up to float32 rounding: floats to RTOL/ATOL, everything else exactly."""
  if isinstance(a, dict) and isinstance(b, dict):
    assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
    for k in a:
      _close(a[k], b[k], f"{where}.{k}")
  elif isinstance(a, list) and isinstance(b, list):
    assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
      _close(x, y, f"{where}[{i}]")
  elif isinstance(a, float) or isinstance(b, float):
    assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} {b!r}"
    assert math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(a) and math.isnan(b)), (
        f"{where}: {a!r} != {b!r}")
  else:
    assert a == b, f"{where}: {a!r} != {b!r}"


def _assert_same_run(one: tuple[dict, list[dict]], two: tuple[dict, list[dict]]) -> None:
  _close(one[0], two[0], "results")
  assert [(r["step"], r["split"]) for r in two[1]] == [(r["step"], r["split"]) for r in one[1]]
  for i, (a, b) in enumerate(zip(one[1], two[1])):
    _close(a, b, f"metrics record {i}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The outcome of a config run by one 4-device process and by two 2-device processes."""
  cache = {}

  def get(flags: tuple[str, ...]):
    if flags not in cache:
      one, two = (str(tmp_path_factory.mktemp("one")), str(tmp_path_factory.mktemp("two")))
      run_python(["-m", "experiments.main", *flags, f"--workdir={one}"],
                 devices=2 * LOCAL_DEVICES)
      outs = _two_processes(["-m", "experiments.main", *flags, f"--workdir={two}"])
      _check_ok(outs)
      cache[flags] = (_outcome(_run_dir(one)), _run_dir(two), outs)
    return cache[flags]

  return get


@pytest.mark.parametrize("flags", [CRAIG, CLIP], ids=["craig", "clip"])
def test_two_processes_match_one_process(flags, runs):
  single, run_dir, outs = runs(flags)
  _assert_same_run(single, _outcome(run_dir))
  # Process 0 alone writes the run's files and prints progress and the results table.
  for name in ("config.json", "meta.json", "metrics.jsonl", "results.json"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  with open(os.path.join(run_dir, "meta.json")) as f:
    assert json.load(f)["process_count"] == 2
  (_, out0, _), (_, out1, _) = outs
  assert "run directory:" in out0 and "\nstep " in "\n" + out0
  assert "run directory:" not in out1 and "\nstep " not in "\n" + out1, out1[-2000:]


def test_sigterm_to_one_process_stops_both_and_the_resume_matches(runs, tmp_path):
  _, uninterrupted, _ = runs(CRAIG)
  workdir = str(tmp_path)
  stopper = _SIGTERM_ONE.format(step=STOP_AT, args=[*CRAIG, f"--workdir={workdir}"])
  outs = _two_processes(["-c", stopper])
  for index, (code, stdout, stderr) in enumerate(outs):
    assert code == 128 + 15, f"process {index} exited {code}:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    assert f"interrupted by SIGTERM at step {STOP_AT}; checkpoint saved" in stderr
  run_dir = _run_dir(workdir)
  assert str(STOP_AT) in os.listdir(os.path.join(run_dir, "checkpoints"))
  assert not os.path.exists(os.path.join(run_dir, "results.json"))
  # Both processes resume from the checkpoint both of them saved.
  _check_ok(_two_processes(["-m", "experiments.main", *CRAIG, f"--workdir={workdir}"]))
  _assert_same_run(_outcome(uninterrupted), _outcome(run_dir))


def test_a_bad_global_batch_stops_both_processes_naming_the_field(tmp_path):
  outs = _two_processes(["-m", "experiments.main", *CRAIG, "--config.train.batch_size=38",
                         f"--workdir={tmp_path}"], timeout=200)
  for code, _, stderr in outs:
    assert code == 2, stderr[-3000:]
    assert "config.train.batch_size=38 is not divisible by the number of devices (4)" in stderr
  assert not os.listdir(tmp_path)


def test_an_unreachable_coordinator_is_a_clear_error(tmp_path):
  proc = run_python(["-m", "experiments.main", *CRAIG, f"--workdir={tmp_path}"], check=False,
                    timeout=200, env_extra={
                        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
                        "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
                        "JAX_INITIALIZATION_TIMEOUT": "2"})
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "did not answer within 2 s ($JAX_INITIALIZATION_TIMEOUT)" in proc.stderr
