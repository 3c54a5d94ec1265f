"""The experiment entrypoint: the only file that defines flags.

  python -m experiments.main --config=configs/quickstart.py:smoke --workdir=runs
  python -m experiments.main --config=configs/baselines/erm_digits.py --config.seed=1
  python -m experiments.main --reproduce=runs/<run id>
"""

import os
import sys

if __name__ == "__main__":
  from experiments import restart_with_huge_pages  # pylint: disable=g-import-not-at-top
  restart_with_huge_pages()  # before anything is imported or allocated

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from robustdata import runner, validation  # pylint: disable=wrong-import-position
from robustdata.registry import ConfigError  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file path, optionally with ':variant'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs", "Runs go to <workdir>/<name>-<config hash>/.")
_REPRODUCE = flags.DEFINE_string(
    "reproduce", None, "A finished run directory: rerun its config.json into a scratch "
    "directory and report, metric by metric, whether the results match.")


_CACHE = flags.DEFINE_string(
    "compilation_cache", None, "JAX's persistent compilation cache directory, so a second run "
    "of a config (and every run of a sweep after the first shape) skips compiling; 'off' "
    "disables it. Default: $ROBUSTDATA_COMPILATION_CACHE, else $JAX_COMPILATION_CACHE_DIR, else "
    "<$XDG_CACHE_HOME or ~/.cache>/robustdata/jax. Never inside a run directory.")


def compilation_cache_dir(flag_value) -> str | None:
  """The cache directory the command line uses (None: off)."""
  value = flag_value or os.environ.get("ROBUSTDATA_COMPILATION_CACHE") or os.environ.get(
      "JAX_COMPILATION_CACHE_DIR")
  if value is None:
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    value = os.path.join(home, "robustdata", "jax")
  return None if value.lower() in ("off", "none", "0", "") else value


def _use_compilation_cache(directory: str | None) -> None:
  """Points JAX's persistent cache at `directory` (None: off); cached executables give the same
  numbers as fresh compiles."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_enable_compilation_cache", directory is not None)
  if directory is not None:
    jax.config.update("jax_compilation_cache_dir", directory)
    # Every program, however quick to compile: a warm run of a small config then compiles
    # nothing (benchmarks/time_to_result.py; docs/results/speed.md, "Time to result").
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()  # loading the config may have compiled (and opened a cache)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  _use_compilation_cache(compilation_cache_dir(_CACHE.value))
  if _REPRODUCE.value:
    return runner.reproduce_cli(_REPRODUCE.value)
  if _CONFIG.value is None:
    raise app.UsageError("--config (or --reproduce) is required")
  return runner.run_cli(_CONFIG.value, _WORKDIR.value)


def _flag_values(argv, prefix: str) -> list[tuple[str, str]]:
  """(name, value) of every `--<prefix>...=v` or `--<prefix>... v` in argv."""
  out = []
  for i, arg in enumerate(argv[1:], start=1):
    if not arg.startswith("--" + prefix):
      continue
    name, eq, value = arg[2:].partition("=")
    if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
      value = argv[i + 1]
    out.append((name, value))
  return out


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def parse_flags(argv):
  """absl's parser behind checks that end a bad command line with one message and exit 2: the
  config file and its variant are loaded here first (a missing file, a syntax error, an
  exception in get_config, an unknown variant), then overrides (an unknown field, a scalar for
  a tuple field, a value of the wrong type)."""
  specs = [v for name, v in _flag_values(argv, "config") if name == "config"]
  config = None
  if specs:
    try:
      config = validation.load_config_file(specs[-1])
    except ConfigError as e:
      _fail(str(e))
  overrides = _flag_values(argv, "config.")
  for name, value in overrides:
    problem = config is not None and validation.tuple_override_problem(
        config, name.removeprefix("config."), value)
    if problem:
      _fail(f"--{name}={value}: {problem}")
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    _fail(f"unknown config field in {[f'--{n}={v}' for n, v in overrides]}: {message}")
  except (flags.Error, ValueError, TypeError, OSError) as e:
    _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
