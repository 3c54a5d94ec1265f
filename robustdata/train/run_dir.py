"""The run directory contract: `<workdir>/<config.name>-<hash>/` with config.json, meta.json,
metrics.jsonl, tensorboard/, checkpoints/ and results.json."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from typing import Any

import jax

from robustdata import config_lib

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy",
            "tensorflow-datasets", "scikit-learn", "dp-accounting", "robustdata")


def package_versions() -> dict[str, str]:
  out = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def git_state() -> dict[str, Any]:
  """The commit and dirty flag of the checkout holding this package (None outside git)."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  def git(*args):
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          timeout=10).stdout.strip()
  try:
    commit = git("rev-parse", "HEAD") or None
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
  except (OSError, subprocess.SubprocessError):
    commit, dirty = None, None
  return {"commit": commit, "dirty": dirty}


def prepare(config, workdir: str) -> str:
  """Creates the run directory for `config` under `workdir`; writes config.json, meta.json."""
  run_dir = os.path.join(workdir, config_lib.run_id(config))
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump(config_lib.to_dict(config), f, indent=2, sort_keys=True)
  meta = {
      "config_hash": config_lib.config_hash(config),
      "versions": package_versions(),
      "git": git_state(),
      "devices": [str(d) for d in jax.devices()],
      "platform": jax.default_backend(),
      "process_count": jax.process_count(),
      "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
      "command": sys.argv,
      "host": socket.gethostname(),
      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  with open(os.path.join(run_dir, "meta.json"), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  return run_dir


def write_results(run_dir: str, results: dict[str, Any]) -> None:
  tmp = os.path.join(run_dir, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump(results, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(run_dir, "results.json"))
