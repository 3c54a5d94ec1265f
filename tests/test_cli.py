"""The entrypoint: overrides, bad input messages (no tracebacks), the run directory contract,
and --reproduce."""

import json
import os

import pytest

from tests.conftest import run_python

CFG = "configs/baselines/erm_digits.py:smoke"


def _main(*args, check=False):
  return run_python(["-m", "experiments.main", *args], check=check, timeout=300)


def test_unknown_override_is_one_clear_error(tmp_path):
  proc = _main(f"--config={CFG}", f"--workdir={tmp_path}", "--config.train.batch_sizee=3")
  assert proc.returncode != 0
  assert "batch_sizee" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_wrong_type_override(tmp_path):
  proc = _main(f"--config={CFG}", f"--workdir={tmp_path}", "--config.train.epochs=abc")
  assert proc.returncode != 0
  assert "epochs" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("override,message", [
    ("--config.model.name=resnet99", "config.model.name='resnet99' is not known"),
    ("--config.data.name=mnist", "config.data.data_dir=''"),
    ("--config.policy.name=nope", "config.policy.name='nope' is not known"),
])
def test_bad_names_stop_before_compiling(tmp_path, override, message):
  proc = _main(f"--config={CFG}", f"--workdir={tmp_path}", override)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr


def test_registered_default_the_file_does_not_name_can_be_overridden(tmp_path):
  """configs/clip/shapes.py names no model.vit_depth; the CLIP model registers it with a default,
  and config_lib.finalize writes it into the loaded config, so the override parses (the run
  then stops at the bad model name, before anything compiles)."""
  proc = _main("--config=configs/clip/shapes.py:smoke", f"--workdir={tmp_path}",
               "--config.model.vit_depth=3", "--config.model.name=resnet99")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "config.model.name='resnet99' is not known" in proc.stderr
  assert "vit_depth" not in proc.stderr


def test_policy_field_the_file_does_not_name_can_be_overridden(tmp_path):
  """configs/craig/digits.py names no policy.method; finalize leaves a typed placeholder for
  it, so the override parses (and a wrong type is the flag parser's clear error)."""
  proc = _main("--config=configs/craig/digits.py:smoke", f"--workdir={tmp_path}",
               "--config.policy.method=lazy", "--config.model.name=resnet99")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "config.model.name='resnet99' is not known" in proc.stderr
  assert "method" not in proc.stderr
  proc = _main("--config=configs/craig/digits.py:smoke", f"--workdir={tmp_path}",
               "--config.policy.use_linear=maybe")
  assert proc.returncode != 0 and "use_linear" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_run_directory_contract_and_reproduce(tmp_path):
  proc = _main(f"--config={CFG}", f"--workdir={tmp_path}", "--config.train.epochs=1",
               "--config.model.name=mlp", check=True)
  assert "test_accuracy" in proc.stdout
  (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
  assert run_dir.name.startswith("erm_digits_smoke-") and len(run_dir.name.split("-")[-1]) == 12
  names = set(os.listdir(run_dir))
  assert {"config.json", "meta.json", "metrics.jsonl", "checkpoints", "results.json",
          "tensorboard"} <= names
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir / "tensorboard"))
  meta = json.loads((run_dir / "meta.json").read_text())
  assert {"versions", "git", "devices", "command"} <= set(meta)
  assert meta["versions"]["jax"] and "dirty" in meta["git"]
  results = json.loads((run_dir / "results.json").read_text())
  for key in ("config_hash", "config_name", "seed", "method", "dataset", "steps", "wall_time_s",
              "test_accuracy", "test_loss", "val_accuracy", "examples_seen"):
    assert key in results
  assert run_dir.name.endswith(results["config_hash"])
  records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert {"train", "val", "results"} <= {r["split"] for r in records}

  proc = _main(f"--reproduce={run_dir}", check=True)
  assert "reproduced: all results match" in proc.stdout


def test_reproduce_ignores_every_timing_key():
  from robustdata import runner  # pylint: disable=g-import-not-at-top
  expected = {"test_accuracy": 0.9, "wall_time_s": 10.0, "crest_quad_time_s": 3.0,
              "dfr_time_s": 1.0}
  got = {"test_accuracy": 0.9, "wall_time_s": 11.0, "crest_quad_time_s": 4.0,
         "dfr_time_s": 2.0}
  assert [r[0] for r in runner.compare(expected, got)] == ["test_accuracy"]
  assert all(r[3] for r in runner.compare(expected, got))
  assert not runner.compare(expected, {**got, "test_accuracy": 0.8})[0][3]
