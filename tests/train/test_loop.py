"""The loop end to end: determinism, bitwise resume after SIGKILL and SIGINT, NaN handling."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from robustdata import runner
from robustdata.train.driver import NonFiniteLossError
from tests.conftest import REPO

# A run long enough to be killed mid-way: tiny MLP on digits, 8 epochs, checkpoint every 7 steps.
RUN_SCRIPT = """
import sys
from robustdata import config_lib, runner
c = config_lib.base_config()
c.name = "resume"
c.model.name = "mlp"
c.model.hidden = (32,)
c.train.epochs = int(sys.argv[2])
c.train.batch_size = 64
c.train.log_every_steps = 5
c.train.checkpoint_every_steps = 7
c.train.progress = "log"
c.policy.name = sys.argv[3]
if c.policy.name == "random_subset":
  c.policy.fraction = 0.5
c.data.augment = ("flip",)  # exercises the per-step augmentation key
runner.run(c, sys.argv[1])
"""


def _launch(workdir, epochs, policy):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(workdir), str(epochs), policy],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _results(workdir):
  (run_dir,) = [p for p in workdir.iterdir() if p.is_dir()]
  results = json.loads((run_dir / "results.json").read_text())
  for key in runner.NONDETERMINISTIC:
    results.pop(key, None)
  metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
  train_losses = {(m["step"], m["split"]): m.get("loss") for m in metrics if m["split"] != "results"}
  return results, train_losses


def _wait_for_checkpoint(proc, workdir, min_step, timeout=240):
  start = time.time()
  while time.time() - start < timeout:
    if proc.poll() is not None:
      raise AssertionError("the run ended before it could be interrupted:\n" + proc.stdout.read())
    for run_dir in workdir.glob("*/checkpoints"):
      steps = [int(p.name) for p in run_dir.iterdir() if p.name.isdigit()]
      if steps and max(steps) >= min_step:
        return
    time.sleep(0.05)
  raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
@pytest.mark.parametrize("sig,policy", [(signal.SIGKILL, "full"), (signal.SIGINT, "random_subset")])
def test_killed_run_resumes_bitwise(tmp_path, sig, policy):
  epochs = 8
  ref = _launch(tmp_path / "ref", epochs, policy)
  assert ref.wait(timeout=600) == 0, ref.stdout.read()

  run = _launch(tmp_path / "killed", epochs, policy)
  _wait_for_checkpoint(run, tmp_path / "killed", min_step=28)
  run.send_signal(sig)
  code = run.wait(timeout=120)
  assert code != 0  # it was stopped, not finished
  if sig == signal.SIGINT:
    assert "checkpoint saved" in run.stdout.read()
  resumed = _launch(tmp_path / "killed", epochs, policy)
  assert resumed.wait(timeout=600) == 0, resumed.stdout.read()

  ref_results, ref_losses = _results(tmp_path / "ref")
  got_results, got_losses = _results(tmp_path / "killed")
  assert got_results == ref_results  # bitwise: floats compared exactly
  shared = set(ref_losses) & set(got_losses)
  assert len(shared) > 10
  assert all(ref_losses[k] == got_losses[k] for k in shared)


def test_same_config_same_numbers_and_rerun_is_a_noop(tmp_path, tiny_config):
  c = tiny_config()
  assert runner.finished_results(c, str(tmp_path / "a")) is None
  _, a = runner.run(c, str(tmp_path / "a"))
  assert runner.finished_results(c, str(tmp_path / "a")) == json.loads(json.dumps(a))
  _, b = runner.run(c, str(tmp_path / "b"))
  for key in runner.NONDETERMINISTIC:
    a.pop(key, None), b.pop(key, None)
  assert a == b
  # Rerunning a finished run restores the final checkpoint and reports the same results.
  _, again = runner.run(c, str(tmp_path / "a"))
  again.pop("wall_time_s")
  assert again == a


def test_nan_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, tiny_config):
  c = tiny_config(**{"optim__learning_rate": 1e30, "train__log_every_steps": 1,
                     "train__checkpoint_every_steps": 1, "optim__momentum": 0.0})
  with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf).*last good checkpoint"):
    runner.run(c, str(tmp_path))
  (run_dir,) = list(tmp_path.iterdir())
  assert not (run_dir / "results.json").exists()


def test_max_steps_and_random_subset_budget(tmp_path, tiny_config):
  c = tiny_config(**{"policy__name": "random_subset", "policy__fraction": 0.25})
  _, r = runner.run(c, str(tmp_path))
  # 1258 train examples * 0.25 = 314 per epoch -> 5 steps of 64; 2 epochs.
  assert r["steps"] == 10 and r["examples_seen"] == 2 * 314
  c = tiny_config(**{"train__max_steps": 3})
  _, r = runner.run(c, str(tmp_path / "m"))
  assert r["steps"] == 3
