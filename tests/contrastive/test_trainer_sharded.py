"""The contrastive trainer end to end on 8 fake CPU devices equals the same run on one device:
a RoCLIP smoke run (a plain CLIP epoch, then a matching epoch whose FIFO pool and nearest-
caption lookup run on the sharded batch) logs the same training losses step by step and ends
with the same evaluation results.

Each run is a fresh process, because the fake device count must be set before JAX starts."""

import json

import numpy as np
import pytest

from tests.conftest import run_python

SCRIPT = r"""
import json, os, sys, tempfile
import jax
from robustdata import runner
from tests.contrastive.test_contrastive_trainer import _tiny
method, devices = sys.argv[1], int(sys.argv[2])
assert jax.device_count() == devices, jax.devices()
config = _tiny(method)
with config.unlocked():
  config.train.log_every_steps = 1
  if method == "roclip":
    config.contrastive.clip_warmup_epochs = 0  # a matching epoch inside the smoke run
run_dir, results = runner.run(config, tempfile.mkdtemp())
with open(os.path.join(run_dir, "metrics.jsonl")) as f:
  records = [json.loads(line) for line in f]
losses = [(r["step"], r["loss"]) for r in records if r.get("split") == "train" and "loss" in r]
print("RESULT " + json.dumps({"losses": losses, "results": {
    k: results[k] for k in ("zero_shot_accuracy", "linear_probe_accuracy", "targeted_asr",
                            "backdoor_asr", "steps")}}))
"""


def _run(method: str, devices: int) -> dict:
  proc = run_python(["-c", SCRIPT, method, str(devices)], devices=devices)
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["roclip"])
def test_trainer_on_8_fake_devices_equals_one_device(method):
  one, eight = _run(method, 1), _run(method, 8)
  assert one["results"]["steps"] == eight["results"]["steps"] > 0
  steps1, loss1 = zip(*one["losses"])
  steps8, loss8 = zip(*eight["losses"])
  assert steps1 == steps8 and len(steps1) >= 4
  np.testing.assert_allclose(loss8, loss1, rtol=2e-4, atol=1e-5)
  for key in ("zero_shot_accuracy", "linear_probe_accuracy", "targeted_asr", "backdoor_asr"):
    assert abs(one["results"][key] - eight["results"][key]) <= 0.02, key
