"""The command line's process-level behaviour: the persistent compilation cache (on by default,
overridable, switchable off, same numbers either way), glibc's huge-page tunable (the command
restarts itself once with it where it helps), multi-host initialisation before JAX is used (a
missing coordinator is one clear error), and signals (one line, exit 128 + signum)."""

import json
import os
import signal
import subprocess
import sys

import pytest

import experiments
from experiments import main as entry
from tests.conftest import REPO, run_python


def test_compilation_cache_directory_resolution(monkeypatch, tmp_path):
  for var in ("ROBUSTDATA_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert entry.compilation_cache_dir(None) == str(tmp_path / ".cache" / "robustdata" / "jax")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert entry.compilation_cache_dir(None) == str(tmp_path / "xdg" / "robustdata" / "jax")
  monkeypatch.setenv("ROBUSTDATA_COMPILATION_CACHE", "off")
  assert entry.compilation_cache_dir(None) is None
  assert entry.compilation_cache_dir("/some/where") == "/some/where"
  assert entry.compilation_cache_dir("off") is None


def test_huge_page_environ_only_where_it_helps():
  thp = "always [madvise] never\n"
  on = experiments.huge_page_environ({"A": "1"}, platform="linux", libc="glibc 2.36",
                                     thp_mode=thp)
  assert on == {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  kept = experiments.huge_page_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                       platform="linux", libc="glibc 2.35", thp_mode=thp)
  assert kept["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  for environ, platform, libc, mode in [
      ({"ROBUSTDATA_HUGE_PAGES": "0"}, "linux", "glibc 2.36", thp),      # switched off
      ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "linux", "glibc 2.36", thp),  # user's
      ({}, "darwin", "", thp),                                            # not Linux
      ({}, "linux", "glibc 2.31", thp),                                   # no such tunable
      ({}, "linux", "musl 1.2", thp),                                     # not glibc
      ({}, "linux", "glibc 2.36", "[always] madvise never\n"),            # on already
      ({}, "linux", "glibc 2.36", "always madvise [never]\n")]:           # refused
    assert experiments.huge_page_environ(environ, platform=platform, libc=libc,
                                         thp_mode=mode) is None, (environ, platform, libc, mode)


_SHOW_TUNABLES = """
import os
def get_config():
  with open(os.environ["TUNABLES_OUT"], "w") as f:
    f.write(os.environ.get("GLIBC_TUNABLES", "<unset>"))
  raise ValueError("stop here")
"""


@pytest.mark.parametrize("switch", ["1", "0"])
def test_cli_restarts_once_with_the_tunable(tmp_path, switch):
  """The config file runs in the process that trains: it sees the tunable where
  `huge_page_environ` says it helps (this machine decides), and the caller's environment with
  ROBUSTDATA_HUGE_PAGES=0."""
  config = tmp_path / "show.py"
  config.write_text(_SHOW_TUNABLES)
  out = tmp_path / "tunables.txt"
  env = {"TUNABLES_OUT": str(out), "ROBUSTDATA_HUGE_PAGES": switch}
  proc = _cli(f"--config={config}", f"--workdir={tmp_path}", env_extra=env, timeout=120)
  assert proc.returncode == 2 and "stop here" in proc.stderr, proc.stderr[-3000:]
  expected = experiments.huge_page_environ({**os.environ, **env})
  before = os.environ.get("GLIBC_TUNABLES", "<unset>")
  assert out.read_text() == (expected["GLIBC_TUNABLES"] if expected else before)
  if switch == "0":
    assert expected is None


def _cli(*args, env_extra=None, timeout=600):
  return run_python(["-m", "experiments.main", *args], check=False, timeout=timeout,
                    env_extra=env_extra)


@pytest.mark.slow
def test_cache_on_and_off_give_the_same_results(tmp_path):
  results = []
  for cache in (str(tmp_path / "cache"), "off"):
    workdir = tmp_path / f"runs_{len(results)}"
    proc = _cli("--config=configs/quickstart.py:smoke", f"--workdir={workdir}",
                "--config.train.progress=none", f"--compilation_cache={cache}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = list(workdir.iterdir())
    with open(run_dir / "results.json") as f:
      results.append({k: v for k, v in json.load(f).items() if not k.endswith("time_s")})
  assert results[0] == results[1]
  assert any((tmp_path / "cache").iterdir())  # executables were written to the given place


def test_distributed_without_a_coordinator_is_one_clear_error(tmp_path):
  proc = _cli("--config=configs/quickstart.py:smoke", f"--workdir={tmp_path}",
              "--config.train.distributed=True", env_extra={"JAX_COORDINATOR_ADDRESS": ""})
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert "config.train.distributed=True" in proc.stderr
  assert "JAX_COORDINATOR_ADDRESS" in proc.stderr
  assert "before any JAX" not in proc.stderr  # initialised before JAX was first used
  assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_prints_one_line_and_exits_with_128_plus_signum(tmp_path, sig):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.main", "--config=configs/baselines/erm_digits.py",
       f"--workdir={tmp_path}", "--config.train.progress=log", "--config.train.log_every_steps=1"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  while True:  # wait until training runs
    line = proc.stdout.readline()
    assert line, proc.stderr.read()[-3000:]
    if line.startswith("step "):
      break
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + sig, err[-3000:]
  assert "Traceback" not in err and "Fatal Python error" not in err
  assert f"interrupted by {signal.Signals(sig).name}" in err and "checkpoint saved" in err
  (run_dir,) = list(tmp_path.iterdir())
  assert any(p.name.isdigit() for p in (run_dir / "checkpoints").iterdir())
  assert not (run_dir / "run.lock").exists()
  del out
