"""The experiment entrypoint: the only file that defines flags.

  python -m experiments.main --config=configs/quickstart.py:smoke --workdir=runs
  python -m experiments.main --config=configs/baselines/erm_digits.py --config.seed=1
  python -m experiments.main --reproduce=runs/<run id>
"""

from absl import app, flags, logging
from ml_collections import config_flags

from robustdata import runner

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file path, optionally with ':variant'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs", "Runs go to <workdir>/<name>-<config hash>/.")
_REPRODUCE = flags.DEFINE_string(
    "reproduce", None, "A finished run directory: rerun its config.json into a scratch "
    "directory and report, metric by metric, whether the results match.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if _REPRODUCE.value:
    return runner.reproduce_cli(_REPRODUCE.value)
  if _CONFIG.value is None:
    raise app.UsageError("--config (or --reproduce) is required")
  return runner.run_cli(_CONFIG.value, _WORKDIR.value)


def parse_flags(argv):
  """absl's parser, with a config override naming no field reported in one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    raise SystemExit(f"error: unknown config field in {overrides}: {message}") from None
  except flags.Error as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
