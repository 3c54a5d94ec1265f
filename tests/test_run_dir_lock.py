"""The run directory: unsafe config names stay inside the workdir (existing run ids unchanged),
filesystem failures are one clear RunDirError, and run.lock keeps two processes out of one run
directory while a dead holder's lock is taken over."""

import errno
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from robustdata import config_lib, runner
from robustdata.registry import ConfigError
from robustdata import run_dir as run_dir_lib
from robustdata.run_dir import RunDirError, RunLock, safe_name
from tests.conftest import REPO
from tests.test_configs import CONFIG_FILES, _load


def _config(name: str = "run"):
  config = config_lib.base_config()
  config.name = name
  config.train.progress = "none"
  return config


def test_config_names_and_run_ids_are_unchanged():
  seen = 0
  for path in CONFIG_FILES:
    module = _load(path)
    if not hasattr(module, "get_config"):
      continue
    for arg in (None, "smoke"):
      config = config_lib.with_defaults(module.get_config(arg))
      assert safe_name(config.name) == config.name
      assert config_lib.run_id(config) == f"{config.name}-{config_lib.config_hash(config)}"
      seen += 1
  assert seen >= 40


@pytest.mark.parametrize("name", ["quickstart", "erm_digits_smoke", "run-2.v1", "lr=0.1,bs=64",
                                  "naïve"])
def test_safe_names_are_kept(name):
  assert safe_name(name) == name


@pytest.mark.parametrize("name", ["../../escape", "/etc/passwd", "a/../../b", "a\0b", ".hidden",
                                  "..", ".", "", "x" * 400, "é" * 200, "a\\b", "tab\there"],
                         ids=lambda n: ascii(n[:12]))
def test_unsafe_names_stay_inside_the_workdir(tmp_path, name):
  workdir = tmp_path / "work"
  run_dir = run_dir_lib.prepare(_config(name), str(workdir))
  assert os.path.dirname(os.path.realpath(run_dir)) == os.path.realpath(workdir)
  assert sorted(os.listdir(tmp_path)) == ["work"]
  assert os.listdir(workdir) == [os.path.basename(run_dir)]
  base = os.path.basename(run_dir)
  assert re.fullmatch(r"[^/\\\0]+-[0-9a-f]{12}", base) and not base.startswith(".")
  assert len(base.encode()) <= 255
  with open(os.path.join(run_dir, "config.json")) as f:
    assert json.load(f)["name"] == name  # the config keeps its name; only the path is safe


def test_workdir_that_is_a_file(tmp_path):
  workdir = tmp_path / "work"
  workdir.write_text("not a directory")
  with pytest.raises(RunDirError, match=rf"{re.escape(str(workdir))} is a file, not a directory"):
    run_dir_lib.prepare(_config(), str(workdir))
  assert issubclass(RunDirError, ConfigError)


def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys):
  workdir = tmp_path / "work"
  workdir.write_text("")
  assert runner.run_cli(_config(), str(workdir)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"error: cannot create the directory {workdir}/")


def test_read_only_workdir(tmp_path, monkeypatch):
  workdir = tmp_path / "work"
  workdir.mkdir()
  if os.geteuid() == 0:  # root ignores permissions: make the filesystem refuse instead
    def refuse(path, *args, **kwargs):
      raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(run_dir_lib.os, "makedirs", refuse)
  else:
    workdir.chmod(0o500)
  try:
    with pytest.raises(RunDirError, match="permission denied; choose a writable --workdir") as e:
      run_dir_lib.prepare(_config(), str(workdir))
    assert str(workdir) in str(e.value)
  finally:
    workdir.chmod(0o700)


def test_full_disk(tmp_path, monkeypatch):
  workdir = tmp_path / "work"
  real_write = os.write

  def full(fd, data):
    if os.readlink(f"/proc/self/fd/{fd}").startswith(str(workdir)):
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_write(fd, data)

  monkeypatch.setattr(run_dir_lib.os, "write", full)
  with pytest.raises(RunDirError, match="no space left on the device") as e:
    run_dir_lib.prepare(_config(), str(workdir))
  run_dir = run_dir_lib.run_path(_config(), str(workdir))
  assert str(e.value).startswith(f"cannot write {os.path.join(run_dir, 'config.json')}: ")
  assert os.listdir(run_dir) == []  # no half-written config.json or temporary file


def _lock_info(path) -> dict:
  with open(path) as f:
    return json.load(f)


def _write_lock(run_dir, **info):
  os.makedirs(run_dir, exist_ok=True)
  holder = {"host": socket.gethostname(), "started": "2024-01-02T03:04:05+0000", **info}
  with open(os.path.join(run_dir, "run.lock"), "w") as f:
    json.dump(holder, f)


def test_lock_is_created_and_released(tmp_path):
  run_dir = str(tmp_path / "run")
  with RunLock(run_dir) as lock:
    info = _lock_info(lock.path)
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert abs(info["started_unix"] - time.time()) < 60 and info["started"]
  assert not os.path.exists(os.path.join(run_dir, "run.lock"))


def test_live_holder_in_this_process_is_refused(tmp_path):
  run_dir = str(tmp_path / "run")
  first = RunLock(run_dir)
  first.acquire()
  try:
    with pytest.raises(RunDirError) as e:
      RunLock(run_dir).acquire()
    assert str(e.value) == (
        f"run directory {run_dir} is in use by pid {os.getpid()} on host "
        f"{socket.gethostname()} (started {_lock_info(first.path)['started']}); wait for it or "
        f"remove {run_dir}/run.lock if that process is gone")
  finally:
    first.release()
  with RunLock(run_dir):  # free again
    pass


def test_concurrent_acquires_admit_exactly_one(tmp_path):
  run_dir = str(tmp_path / "run")
  barrier, results = threading.Barrier(8), []

  def attempt():
    lock = RunLock(run_dir)
    barrier.wait()
    try:
      lock.acquire()
      results.append(lock)
    except RunDirError:
      results.append(None)

  threads = [threading.Thread(target=attempt) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  winners = [r for r in results if r is not None]
  assert len(results) == 8 and len(winners) == 1
  winners[0].release()


def test_other_process_lock_refused_then_taken_over_when_it_dies(tmp_path, capsys):
  run_dir = str(tmp_path / "run")
  sleeper = subprocess.Popen(["sleep", "60"])
  try:
    _write_lock(run_dir, pid=sleeper.pid, pid_start=run_dir_lib._process_start(sleeper.pid))
    with pytest.raises(RunDirError, match=f"in use by pid {sleeper.pid} on host"):
      RunLock(run_dir).acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  with RunLock(run_dir) as lock:
    assert _lock_info(lock.path)["pid"] == os.getpid()
  err = capsys.readouterr().err
  assert f"taking over the lock {run_dir}/run.lock of pid {sleeper.pid}" in err


def test_reused_pid_is_stale(tmp_path, capsys):
  run_dir = str(tmp_path / "run")
  start = run_dir_lib._process_start(os.getpid())
  if start is None:
    pytest.skip("no /proc: process start times are unknown")
  _write_lock(run_dir, pid=os.getpid(), pid_start=start - 1)  # same pid, another process
  with RunLock(run_dir):
    pass
  assert "taking over" in capsys.readouterr().err


def test_other_host_is_treated_as_live(tmp_path):
  run_dir = str(tmp_path / "run")
  _write_lock(run_dir, pid=1, host="another-host.example")
  with pytest.raises(RunDirError, match="in use by pid 1 on host another-host.example"):
    RunLock(run_dir).acquire()


def test_unreadable_old_lock_is_stale(tmp_path, capsys):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "run.lock").write_text("")  # a holder that died between creating and writing it
  old = time.time() - 60
  os.utime(run_dir / "run.lock", (old, old))
  with RunLock(str(run_dir)):
    pass
  assert "taking over" in capsys.readouterr().err


def test_release_leaves_a_lock_it_does_not_hold(tmp_path):
  run_dir = str(tmp_path / "run")
  lock = RunLock(run_dir)
  lock.acquire()
  _write_lock(run_dir, pid=os.getpid(), token="someone-else")
  lock.release()
  assert os.path.exists(os.path.join(run_dir, "run.lock"))


def test_lock_is_released_at_interpreter_exit(tmp_path):
  run_dir = str(tmp_path / "run")
  code = ("import sys; from robustdata.run_dir import RunLock\n"
          f"RunLock({run_dir!r}).acquire(); print('held', flush=True); sys.exit(3)")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 3 and proc.stdout.strip() == "held", proc.stderr[-2000:]
  assert not os.path.exists(os.path.join(run_dir, "run.lock"))
