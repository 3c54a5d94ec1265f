"""The run directory contract: `<workdir>/<safe config.name>-<hash>/` with config.json,
meta.json, metrics.jsonl, tensorboard/, checkpoints/, results.json and, while a run is
active, run.lock."""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Iterator, Optional

import jax

from robustdata import config_lib
from robustdata.registry import ConfigError

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy",
            "tensorflow-datasets", "scikit-learn", "dp-accounting", "robustdata")
LOCK_NAME = "run.lock"
NAME_BYTES = 120  # longest safe name (UTF-8 bytes); the run id adds 13 characters
_NAME_PUNCTUATION = "_-.+=,@"


class RunDirError(ConfigError):
  """The run directory cannot be created, written or used (the message names the path)."""


class RunDirInUse(RunDirError):
  """The run directory is locked by another live process."""


def safe_name(name: str) -> str:
  """`name` as one file name that stays inside its directory: characters other than letters,
  digits and `_-.+=,@` become `_`, as do leading dots; at most NAME_BYTES bytes; never empty.
  A plain identifier is returned unchanged."""
  out = "".join(c if c.isalnum() or c in _NAME_PUNCTUATION else "_" for c in str(name))
  stripped = out.lstrip(".")
  out = "_" * (len(out) - len(stripped)) + stripped
  while len(out.encode()) > NAME_BYTES:
    out = out[:-1]
  return out or "run"


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


def run_path(config, workdir: str) -> str:
  """`<workdir>/<run id>`: the run directory of `config` (nothing is created)."""
  run_dir = os.path.join(workdir, config_lib.run_id(config))
  if os.path.dirname(os.path.abspath(run_dir)) != os.path.abspath(workdir):
    raise RunDirError(f"config.name={config.name!r} gives the run directory {run_dir!r}, "
                      f"which is not directly inside the workdir {workdir!r}")
  return run_dir


def on_primary(action: Callable[[], Any], *, what: str) -> None:
  """Runs `action` on process 0 only (a run directory's files are written once); in a
  multi-process run the others wait for it and learn whether it succeeded, raising a
  RunDirError saying what process 0 could not do instead of hanging at the next collective."""
  if jax.process_count() == 1:
    action()
    return
  from robustdata.train import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  error = None
  if jax.process_index() == 0:
    try:
      action()
    except BaseException as e:  # pylint: disable=broad-except  (re-raised below)
      error = e
  if not sharding_lib.primary_succeeded(error is None):
    if error is not None:
      raise error
    raise RunDirError(f"process 0 could not {what}; its output says why")


def prepare(config, workdir: str) -> str:
  """Creates the run directory for `config` under `workdir`; writes config.json, meta.json
  (process 0 of a multi-process run; the others wait for it). A workdir that is a file, not
  writable or full is a RunDirError naming the path."""
  run_dir = run_path(config, workdir)
  on_primary(lambda: _write_prepared(config, run_dir),
             what=f"prepare the run directory {run_dir}")
  return run_dir


def _write_prepared(config, run_dir: str) -> None:
  with fs_errors(run_dir):
    make_dir(run_dir)
    write_json(os.path.join(run_dir, "config.json"), config_lib.to_dict(config))
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
    write_json(os.path.join(run_dir, "meta.json"), meta)


def make_dir(path: str) -> None:
  """os.makedirs(path, exist_ok=True); a file in the way is a RunDirError naming it."""
  head = os.path.abspath(path)
  while head and not os.path.exists(head):
    head = os.path.dirname(head)
  if head and not os.path.isdir(head):
    raise RunDirError(f"cannot create the directory {path}: {head} is a file, not a "
                      "directory")
  with fs_errors(path, "create the directory"):
    os.makedirs(path, exist_ok=True)


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON through a synced temporary file and a rename, then syncs the
  directory: no torn file, and once this returns the file survives a crash."""
  tmp = f"{path}.tmp-{os.getpid()}-{time.time_ns()}"
  with fs_errors(path):
    try:
      fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      try:
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        while data:
          data = data[os.write(fd, data):]
        os.fsync(fd)
      finally:
        os.close(fd)
      os.replace(tmp, path)
      fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
      try:
        os.fsync(fd)
      finally:
        os.close(fd)
    except OSError:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise


@contextlib.contextmanager
def fs_errors(path: str, action: str = "write") -> Iterator[None]:
  """Turns an OSError inside the block into a RunDirError naming `path` and the cause."""
  try:
    yield
  except OSError as error:
    where = f" ({error.filename})" if error.filename and error.filename != path else ""
    raise RunDirError(f"cannot {action} {path}{where}: {_explain(error)}") from None


def _explain(error: OSError) -> str:
  reasons = {
      errno.ENOSPC: "no space left on the device; free some or choose another --workdir",
      errno.EDQUOT: "disk quota exceeded; free some space or choose another --workdir",
      errno.EACCES: "permission denied; choose a writable --workdir",
      errno.EPERM: "operation not permitted; choose a writable --workdir",
      errno.EROFS: "read-only file system; choose a writable --workdir",
      errno.ENOTDIR: "a part of the path is a file, not a directory",
      errno.EEXIST: "a file is in the way of a directory",
      errno.ENAMETOOLONG: "the file name is too long",
  }
  return reasons.get(error.errno, error.strerror or str(error))


def read_json_object(path: str) -> dict[str, Any]:
  """The JSON object in `path` (config.json, results.json); a missing, unreadable or non-object
  file is a ConfigError naming it."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise ConfigError(f"{path} is not valid JSON ({e})") from None
  if not isinstance(value, dict):
    raise ConfigError(f"{path} holds a JSON {type(value).__name__}, not an object")
  return value


def write_results(run_dir: str, results: dict[str, Any]) -> None:
  """Writes results.json atomically (the marker of a finished run); process 0 of a
  multi-process run writes it and the others return once it exists."""
  path = os.path.join(run_dir, "results.json")
  on_primary(lambda: write_json(path, results), what=f"write {path}")


_HELD: dict[str, "RunLock"] = {}  # run directories this process holds, by absolute path


@contextlib.contextmanager
def locked(run_dir: str) -> Iterator[None]:
  """Holds the run directory's lock for the block: re-entrant within this process (the runner
  locks before it writes config.json and meta.json, the driver again when called directly),
  and taken by process 0 only in a multi-process run (the directory is shared; the others
  stop with a RunDirError when process 0 cannot take it)."""
  key = os.path.abspath(run_dir)
  if key in _HELD:
    yield
    return
  lock = _HELD[key] = RunLock(run_dir)
  try:
    on_primary(lock.acquire, what=f"take the lock of the run directory {run_dir}")
    yield
  finally:
    _HELD.pop(key, None)
    lock.release()


class RunLock:
  """Holds `<run_dir>/run.lock` so two processes never train into the same run directory.

  The lock file is created atomically and holds {pid, host, started}. A lock of a live
  process is a RunDirError; one of a dead process on this host is taken over with a note. A
  lock from another host is always treated as live (its process cannot be checked from here;
  a long run may hold it for weeks), so the message says to remove it by hand if that
  process is gone. Released on exit of the `with` block, by `release()`, or at interpreter
  exit. In a multi-process run only process 0 should take it.
  """

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self.path = os.path.join(run_dir, LOCK_NAME)
    self._token: Optional[str] = None

  def __enter__(self) -> "RunLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  @property
  def held(self) -> bool:
    return self._token is not None

  def acquire(self) -> None:
    """Takes the lock or raises RunDirError naming the process that holds it."""
    if self.held:
      return
    make_dir(self.run_dir)
    token = uuid.uuid4().hex
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_unix": time.time(),
            "pid_start": _process_start(os.getpid()), "token": token}
    with fs_errors(self.path, "create the lock"):
      for _ in range(3):
        if self._create(info):
          break
        with _dir_flock(self.run_dir):  # one process at a time judges and removes a stale lock
          holder = self._read_holder()
          if holder is not None and _alive(holder):
            raise RunDirInUse(
                f"run directory {self.run_dir} is in use by pid {holder.get('pid')} on host "
                f"{holder.get('host')} (started {holder.get('started')}); wait for it or "
                f"remove {self.path} if that process is gone")
          if holder is not None:
            print(f"note: taking over the lock {self.path} of pid {holder.get('pid')} on "
                  f"host {holder.get('host')} (started {holder.get('started')}): that process "
                  "is gone", file=sys.stderr, flush=True)
          try:
            os.remove(self.path)
          except FileNotFoundError:
            pass
      else:
        raise RunDirError(f"cannot take the lock {self.path}: other processes keep creating it")
    self._token = token
    atexit.register(self.release)

  def release(self) -> None:
    """Removes the lock file if this process holds it (a forked child never removes it)."""
    if self._token is None:
      return
    token, self._token = self._token, None
    atexit.unregister(self.release)
    try:
      with open(self.path) as f:
        holder = json.load(f)
    except (OSError, ValueError):
      return
    if holder.get("token") == token and holder.get("pid") == os.getpid():
      try:
        os.remove(self.path)
      except OSError:
        pass

  def _create(self, info: dict[str, Any]) -> bool:
    """Creates the lock file holding `info` (True), or finds one there (False)."""
    try:
      fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      return False
    try:
      data = json.dumps(info, sort_keys=True).encode()
      while data:
        data = data[os.write(fd, data):]
      os.fsync(fd)
    except OSError:
      os.close(fd)
      os.remove(self.path)
      raise
    os.close(fd)
    return True

  def _read_holder(self) -> Optional[dict[str, Any]]:
    """The lock's JSON; None if it vanished. A lock that stays unreadable for seconds (its
    process died between creating and writing it) is reported as a dead holder."""
    dead = {"pid": None, "host": socket.gethostname(), "started": "unknown (unreadable lock)"}
    for _ in range(50):
      try:
        with open(self.path) as f:
          holder = json.load(f)
        if isinstance(holder, dict):
          return holder
      except FileNotFoundError:
        return None
      except (OSError, ValueError):
        pass
      try:
        if time.time() - os.path.getmtime(self.path) > 5.0:
          return dead
      except OSError:
        return None
      time.sleep(0.1)
    return dead


def _alive(holder: dict[str, Any]) -> bool:
  """Whether the lock's process may still run: always for another host; on this host, a live
  pid whose start time matches the lock's (a reused pid does not)."""
  if holder.get("host") != socket.gethostname():
    return True
  pid = holder.get("pid")
  if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # a process of another user
  recorded, now = holder.get("pid_start"), _process_start(pid)
  return recorded is None or now is None or recorded == now


def _process_start(pid: int) -> Optional[int]:
  """The start time of `pid` in clock ticks since boot (Linux), to tell a reused pid apart."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[19])
  except (OSError, ValueError, IndexError):
    return None


@contextlib.contextmanager
def _dir_flock(path: str) -> Iterator[None]:
  """An exclusive flock on a directory: serialises stale-lock takeover on one host."""
  fd = os.open(path, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
      pass  # a filesystem without flock: the O_EXCL create still admits one process
    yield
  finally:
    os.close(fd)  # also drops the flock
