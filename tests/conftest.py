"""Shared test setup: CPU only, absl flags marked parsed, small-config helpers."""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the whole session, the xdist workers and the
# subprocesses they start: many tests compile the same models and steps, and compiling
# dominates the suite's time on CPU. Cached executables give identical results.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"robustdata-test-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top

flags.FLAGS.mark_as_parsed()

import jax  # pylint: disable=g-import-not-at-top

# In case a plugin imported jax before the environment above was set.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_devices_flags(devices: int) -> str:
  """XLA_FLAGS for a process with `devices` fake CPU devices. XLA:CPU aborts the process when a
  collective's participants have not all arrived 20 + 40 s after the first; on a loaded 2-core
  machine (the other xdist worker, a second process of a multi-process test) one device thread of
  eight can lag that long, so the tests wait as long as their subprocess timeout instead."""
  return (f"--xla_force_host_platform_device_count={devices} "
          "--xla_cpu_collective_call_terminate_timeout_seconds=600")


def run_python(code_or_args, *, devices: int = 1, timeout: int = 600, check: bool = True,
               env_extra=None) -> subprocess.CompletedProcess:
  """Runs Python in a fresh process (e.g. with N fake CPU devices) from the repo root."""
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = fake_devices_flags(devices)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env.update(env_extra or {})
  args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
  proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-6000:]}")
  return proc


def pytest_collection_modifyitems(config, items):
  """Moves the tests marked `longest` to where pytest-xdist's load scheduler starts each worker:
  its first chunk of the collection goes to the first worker, the next to the second, and so
  on (a chunk is a quarter of a worker's share), so with N workers the first N such tests run
  side by side from the start instead of queueing behind each other at the end."""
  del config
  longest = [item for item in items if item.get_closest_marker("longest")]
  if not longest:
    return
  rest = [item for item in items if not item.get_closest_marker("longest")]
  workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
  chunk = max(2, len(items) // workers // 4) if workers > 1 else 1
  for i, item in enumerate(longest):
    rest.insert(min(i * chunk, len(rest)) if i < workers else i, item)
  items[:] = rest


@pytest.fixture
def tiny_config():
  """A seconds-long digits run: tiny MLP, 2 epochs."""
  from robustdata import config_lib  # pylint: disable=g-import-not-at-top

  def make(**overrides):
    c = config_lib.base_config()
    c.name = "tiny"
    c.model.name = "mlp"
    c.model.hidden = (32,)
    c.train.epochs = 2
    c.train.batch_size = 64
    c.train.eval_batch_size = 256
    c.train.log_every_steps = 5
    c.train.checkpoint_every_steps = 7
    c.train.progress = "none"
    c.optim.learning_rate = 0.1
    for dotted, value in overrides.items():
      section, _, field = dotted.rpartition("__")
      (c[section] if section else c)[field] = value
    return c

  return make


def sigint_after(patch: pytest.MonkeyPatch, k: int) -> None:
  """SIGINT to this process while step k of the next run goes (the driver finishes the step,
  saves a checkpoint and raises driver.Interrupted)."""
  import signal  # pylint: disable=g-import-not-at-top
  from robustdata.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  append, count = metrics_lib.MetricsWindow.append, [0]

  def append_then_signal(self, metrics):
    append(self, metrics)
    count[0] += 1
    if count[0] == k:
      os.kill(os.getpid(), signal.SIGINT)

  patch.setattr(metrics_lib.MetricsWindow, "append", append_then_signal)
