"""Writes the goldens of tests/test_goldens.py: the behaviour of the current code, pinned.

  python tests/goldens/make_goldens.py --what=run_ids      # run_ids.json
  python tests/goldens/make_goldens.py --what=checkpoints  # ckpt_supervised/, ckpt_contrastive/,
                                                           # ckpt_results.json, ckpt_metrics_*.jsonl
  python tests/goldens/make_goldens.py --what=smoke        # smoke_results.json

- run_ids.json: the run id (`runner.run`'s directory name) of every config file under configs/
  with no arg, 'smoke' and each of its variant tokens, keyed like `--config`
  ('configs/crest/digits.py:hard').
- ckpt_<trainer>/: the run directory of a smoke run of each trainer interrupted mid-epoch by
  SIGINT (the trainers' own stop: finish the step, checkpoint, raise KeyboardInterrupt); the
  directory is named by the run id of the config that resumes it. ckpt_results.json and
  ckpt_metrics_<trainer>.jsonl: what resuming that directory to the end gives.
- smoke_results.json: the results of the same smoke runs from scratch.
Results and metrics leave out the keys `runner.is_nondeterministic` names (timings).

Regenerating a golden changes what the tests pin: do it only for a deliberate change of
behaviour (a new config field, a renamed run, a changed trainer), from a clean checkout, and
say so and why in the commit message.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the goldens are CPU numbers, as in the tests
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDENS = os.path.join(REPO, "tests", "goldens")
if REPO not in sys.path[:1]:
  sys.path.insert(0, REPO)  # this checkout's robustdata and configs, not an installed copy

from robustdata import config_lib, runner  # noqa: E402  pylint: disable=g-import-not-at-top

# Variant tokens each config file accepts besides 'smoke' (read from the files' get_config).
VARIANT_TOKENS = {
    "configs/augment_coresets/digits.py": ("random", "full_aug", "none"),
    "configs/clip_scenes/clip.py": ("r005", "r02", "r05", "t50", "r02,e30",
                                    "r05,blend", "blend"),
    "configs/clip_scenes/roclip.py": ("r005", "r02", "r05", "t50", "r02,e30",
                                      "r05,blend", "blend"),
    "configs/clip_scenes/safeclip.py": ("r005", "r02", "r05", "t50", "r02,e30",
                                        "r05,blend", "blend"),
    "configs/clip_scenes/cleanclip.py": ("r005", "r02", "r05", "t50", "r02,e30", "smoke,e30",
                                         "r05,blend", "blend"),
    "configs/clip_scenes/filter.py": ("r005", "r02", "r05", "t50", "r02,e30",
                                      "r05,blend", "blend"),
    "configs/craig/digits.py": ("hard", "b10"),
    "configs/crest/digits.py": ("full", "random", "craig", "hard", "loose", "b10"),
    "configs/dpsgd/cifar10.py": ("eps1", "eps8", "sgd", "clip_only", "noise_only", "sparsity90",
                                 "dp_then_sgd", "sgd_then_dp"),
    "configs/dpsgd/digits.py": ("eps1", "eps8", "sgd", "clip_only", "noise_only", "sparsity90",
                                "dp_then_sgd", "sgd_then_dp"),
    "configs/dpsgd/pruning_width.py": ("w256,s90,iter", "w64,s95,once", "w256,noise_only"),
    "configs/friendly_noise/bp_digits.py": ("ensemble3",),
    "configs/friendly_noise/gm_shapes.py": ("clean", "friendly,trial2,seed1"),
    "configs/label_noise/digits.py": ("none", "asym40", "elr", "mixup"),
    "configs/ordering/digits.py": ("descending", "examples", "random", "fixed", "grab",
                                   "grab,linear", "random,decreasing"),
    "configs/pde/synthetic_erm.py": ("case2",),
    "configs/pde/synthetic_pde.py": ("case2",),
    "configs/spuco/cnc_digits.py": ("magnitude_small", "seed1"),
    "configs/spuco/groupdro_inferred_digits.py": ("cluster", "spare", "eiil", "ssa",
                                                  "magnitude_small"),
    "configs/spuco/infer_ssa_digits.py": ("variance_low", "magnitude_small"),
    "configs/spuco/spare_digits.py": ("magnitude_small", "seed1"),
    "configs/width_noise/cifar10.py": ("n0", "n20", "n60", "s50", "s20"),
    "configs/width_noise/cifar100.py": ("n0", "n60", "s20"),
    "configs/width_noise/digits.py": ("n0", "n20", "n40", "s25"),
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A pinned run: config file, arg, dotted overrides, and the step the interrupted run stops
  at (mid-epoch, off the logging cadence, so the checkpoint carries a partial metrics window)."""

  file: str
  arg: str
  overrides: tuple[tuple[str, Any], ...]
  interrupt_at: int


RUNS = {
    # 2 epochs of 20 steps (1,258 train, batch 64); logs every 20 steps; eval after epoch 1.
    "supervised": RunSpec("configs/baselines/erm_digits.py", "smoke",
                          (("train.progress", "none"),), interrupt_at=27),
    # 2 epochs of 4 steps (272 pairs with the 16 poisons, batch 64); logs every 2 steps,
    # checkpoints every 4.
    "contrastive": RunSpec("configs/clip/shapes.py", "smoke",
                           (("train.progress", "none"),), interrupt_at=5),
}


def config_files() -> list[str]:
  """Paths (relative to the repository) of the config files: modules with get_config."""
  out = []
  for root, _, files in os.walk(os.path.join(REPO, "configs")):
    for name in files:
      if name.endswith(".py") and name != "__init__.py":
        path = os.path.join(root, name)
        with open(path) as f:
          if "def get_config(" in f.read():
            out.append(os.path.relpath(path, REPO))
  return sorted(out)


def load_module(relpath: str):
  spec = importlib.util.spec_from_file_location("golden_config", os.path.join(REPO, relpath))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def entry_key(relpath: str, arg: str | None) -> str:
  """The `--config` spelling of a config file and arg, e.g. 'configs/crest/digits.py:hard'."""
  return relpath if arg is None else f"{relpath}:{arg}"


def split_key(key: str) -> tuple[str, str | None]:
  relpath, _, arg = key.partition(":")
  return relpath, (arg if arg else None)


def run_id_of(relpath: str, arg: str | None, module=None) -> str:
  """The run directory name `runner.run` gives `get_config(arg)` of the file."""
  config = (module or load_module(relpath)).get_config(arg)
  return config_lib.run_id(config_lib.with_defaults(config))


def run_ids() -> dict[str, str]:
  out = {}
  for relpath in config_files():
    module = load_module(relpath)
    for arg in (None, "smoke", *VARIANT_TOKENS.get(relpath, ())):
      out[entry_key(relpath, arg)] = run_id_of(relpath, arg, module)
  return out


def make_config(spec: RunSpec):
  """The spec's config: `get_config(arg)` of its file with the overrides applied."""
  config = load_module(spec.file).get_config(spec.arg)
  with config.unlocked():
    for dotted, value in spec.overrides:
      section, field = dotted.split(".")
      config[section][field] = value
  return config


def deterministic(results: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in results.items() if not runner.is_nondeterministic(k)}


def metric_records(path: str) -> list[dict[str, Any]]:
  """The records of a metrics.jsonl without their timing fields."""
  with open(path) as f:
    return [deterministic(json.loads(line)) for line in f if line.strip()]


def mismatches(expected: Any, got: Any, *, rtol: float = 1e-5, atol: float = 1e-8,
               where: str = "") -> list[str]:
  """Where `got` differs from `expected`: floats within rtol (NaN equals NaN), the rest exactly,
  dicts and lists element by element."""
  if isinstance(expected, dict) and isinstance(got, dict):
    out = []
    for k in sorted(set(expected) | set(got), key=str):
      if k not in got or k not in expected:
        out.append(f"{where}.{k}: expected {expected.get(k, '(absent)')!r}, got "
                   f"{got.get(k, '(absent)')!r}")
      else:
        out += mismatches(expected[k], got[k], rtol=rtol, atol=atol, where=f"{where}.{k}")
    return out
  if isinstance(expected, list) and isinstance(got, list):
    if len(expected) != len(got):
      return [f"{where}: expected {len(expected)} items, got {len(got)}"]
    return [m for i, (a, b) in enumerate(zip(expected, got))
            for m in mismatches(a, b, rtol=rtol, atol=atol, where=f"{where}[{i}]")]
  if (isinstance(expected, float) and isinstance(got, (int, float))
      and not isinstance(got, bool)):
    if (math.isnan(expected) and math.isnan(got)) or math.isclose(expected, got, rel_tol=rtol,
                                                                  abs_tol=atol):
      return []
  elif type(expected) is type(got) and expected == got:
    return []
  return [f"{where}: expected {expected!r}, got {got!r}"]


def interrupted_run(spec: RunSpec, workdir: str) -> str:
  """Runs the spec's config under `workdir` until SIGINT stops it after step `interrupt_at`;
  returns its run directory (config.json, meta.json, metrics.jsonl, checkpoints/)."""
  from robustdata.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  append = metrics_lib.MetricsWindow.append
  steps = [0]

  def counting_append(self, step_metrics):  # one call per train step in both trainers
    append(self, step_metrics)
    steps[0] += 1
    if steps[0] == spec.interrupt_at:
      signal.raise_signal(signal.SIGINT)

  metrics_lib.MetricsWindow.append = counting_append
  try:
    runner.run(make_config(spec), workdir)
  except KeyboardInterrupt:
    pass
  else:
    raise RuntimeError(f"{spec.file}:{spec.arg} finished before step {spec.interrupt_at}")
  finally:
    metrics_lib.MetricsWindow.append = append
  run_dir = os.path.join(workdir, config_lib.run_id(config_lib.with_defaults(make_config(spec))))
  saved = sorted(int(s) for s in os.listdir(os.path.join(run_dir, "checkpoints")) if s.isdigit())
  if not saved or saved[-1] != spec.interrupt_at:
    raise RuntimeError(f"expected a checkpoint at step {spec.interrupt_at}; got {saved}")
  return run_dir


def resume(fixture: str, spec: RunSpec, workdir: str) -> tuple[str, dict[str, Any]]:
  """Copies a fixture run directory into `workdir` under its name and reruns its config there."""
  name = os.path.basename(os.path.normpath(fixture))
  config = make_config(spec)
  run_id = config_lib.run_id(config_lib.with_defaults(config))
  if run_id != name:
    raise AssertionError(f"{spec.file}:{spec.arg} now has run id {run_id}, the fixture "
                         f"{fixture} is {name}: the config would not resume it")
  shutil.copytree(fixture, os.path.join(workdir, name))
  return runner.run(config, workdir)


def fixture_dir(trainer: str) -> str:
  """The one run directory inside tests/goldens/ckpt_<trainer>/."""
  parent = os.path.join(GOLDENS, f"ckpt_{trainer}")
  (name,) = os.listdir(parent)
  return os.path.join(parent, name)


def _write_json(name: str, obj: Any) -> None:
  with open(os.path.join(GOLDENS, name), "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.write("\n")


def write_run_ids() -> None:
  ids = run_ids()
  _write_json("run_ids.json", ids)
  print(f"run_ids.json: {len(ids)} entries")


def write_checkpoints() -> None:
  results = {}
  for trainer, spec in RUNS.items():
    with tempfile.TemporaryDirectory() as tmp:
      run_dir = interrupted_run(spec, os.path.join(tmp, "stopped"))
      parent = os.path.join(GOLDENS, f"ckpt_{trainer}")
      shutil.rmtree(parent, ignore_errors=True)
      shutil.copytree(run_dir, os.path.join(parent, os.path.basename(run_dir)),
                      ignore=shutil.ignore_patterns("tensorboard", "results.json"))
      new_dir, got = resume(fixture_dir(trainer), spec, os.path.join(tmp, "resumed"))
      results[trainer] = deterministic(got)
      with open(os.path.join(GOLDENS, f"ckpt_metrics_{trainer}.jsonl"), "w") as f:
        for record in metric_records(os.path.join(new_dir, "metrics.jsonl")):
          f.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"ckpt_{trainer}: stopped at step {spec.interrupt_at}, resumed to step {got['steps']}")
  _write_json("ckpt_results.json", results)


def write_smoke() -> None:
  results = {}
  for trainer, spec in RUNS.items():
    with tempfile.TemporaryDirectory() as tmp:
      _, got = runner.run(make_config(spec), tmp)
      results[trainer] = deterministic(got)
  _write_json("smoke_results.json", results)
  print(f"smoke_results.json: {sorted(results)}")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--what", required=True, choices=("run_ids", "checkpoints", "smoke"))
  args = p.parse_args()
  {"run_ids": write_run_ids, "checkpoints": write_checkpoints, "smoke": write_smoke}[args.what]()


if __name__ == "__main__":
  main()
