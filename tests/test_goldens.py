"""The current code against goldens written by tests/goldens/make_goldens.py: the run id of
every config file and variant, resuming each trainer's interrupted smoke run from a checkpoint
written by the pinned code, and both trainers' smoke results.

A mismatch means behaviour changed. If the change is deliberate, regenerate the golden with
`python tests/goldens/make_goldens.py --what=run_ids|checkpoints|smoke` and say so in the commit
message."""

from __future__ import annotations

import json
import os

import pytest

from robustdata import runner
from robustdata.train import metrics as metrics_lib
from tests.goldens import make_goldens as goldens

TRAINERS = sorted(goldens.RUNS)


def _golden(name: str):
  with open(os.path.join(goldens.GOLDENS, name)) as f:
    return json.load(f)


def _regenerate(what: str) -> str:
  return (f"If this change is deliberate, regenerate with `python tests/goldens/make_goldens.py "
          f"--what={what}` and say so in the commit message.")


def test_run_ids_unchanged():
  expected = _golden("run_ids.json")
  assert len(expected) >= 90  # every config file with no arg, 'smoke' and its variant tokens
  changed = []
  for key, run_id in sorted(expected.items()):
    relpath, arg = goldens.split_key(key)
    try:
      got = goldens.run_id_of(relpath, arg)
    except Exception as e:  # pylint: disable=broad-except
      got = f"(error: {type(e).__name__}: {e})"
    if got != run_id:
      changed.append(f"  {key}: {run_id} -> {got}")
  assert not changed, (f"{len(changed)} of {len(expected)} run ids changed (a run id names the "
                       "run directory, so a changed one no longer resumes or reuses old runs):\n"
                       + "\n".join(changed) + "\n" + _regenerate("run_ids"))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", TRAINERS)
def test_resume_from_pinned_checkpoint(trainer, tmp_path, monkeypatch):
  spec = goldens.RUNS[trainer]
  fixture = goldens.fixture_dir(trainer)
  steps = []
  append = metrics_lib.MetricsWindow.append

  def counting_append(self, step_metrics):  # once per train step, in both trainers
    steps.append(1)
    append(self, step_metrics)

  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", counting_append)
  run_dir, results = goldens.resume(fixture, spec, str(tmp_path))

  assert run_dir == os.path.join(str(tmp_path), os.path.basename(fixture))
  expected = _golden("ckpt_results.json")[trainer]
  assert len(steps) == expected["steps"] - spec.interrupt_at, (
      f"{len(steps)} steps trained; a resume from the step-{spec.interrupt_at} checkpoint trains "
      f"{expected['steps'] - spec.interrupt_at}")
  bad = goldens.mismatches(expected, goldens.deterministic(results))
  assert not bad, "results differ:\n" + "\n".join(bad) + "\n" + _regenerate("checkpoints")

  # The records up to the checkpoint are kept as written (timings included), then the rest.
  with open(os.path.join(fixture, "metrics.jsonl")) as f:
    before = [json.loads(line) for line in f if line.strip()]
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    after = [json.loads(line) for line in f if line.strip()]
  assert after[:len(before)] == before
  with open(os.path.join(goldens.GOLDENS, f"ckpt_metrics_{trainer}.jsonl")) as f:
    expected_records = [json.loads(line) for line in f if line.strip()]
  got_records = goldens.metric_records(os.path.join(run_dir, "metrics.jsonl"))
  bad = goldens.mismatches(expected_records, got_records)
  assert not bad, "metrics.jsonl differs:\n" + "\n".join(bad) + "\n" + _regenerate("checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("trainer", TRAINERS)
def test_smoke_results_unchanged(trainer, tmp_path):
  _, results = runner.run(goldens.make_config(goldens.RUNS[trainer]), str(tmp_path))
  bad = goldens.mismatches(_golden("smoke_results.json")[trainer], goldens.deterministic(results))
  assert not bad, "results differ:\n" + "\n".join(bad) + "\n" + _regenerate("smoke")
