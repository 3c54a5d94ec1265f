"""Runs every point of a config file's get_sweep() as its own run, then prints their table.

  python -m experiments.sweep --config=configs/spuco/erm_digits.py:smoke --workdir=runs
  python -m experiments.sweep --config=configs/dpsgd/digits.py --workdir=runs --jobs=4

Finished points are reused and interrupted ones resume, so rerunning the command continues a
sweep; --jobs=N runs N points at a time in worker processes (their output goes to
<workdir>/.sweep_logs/<run id>.log).
"""

import sys

if __name__ == "__main__":
  from experiments import restart_with_huge_pages  # pylint: disable=g-import-not-at-top
  restart_with_huge_pages()  # before anything is imported or allocated

from absl import app, flags, logging  # pylint: disable=wrong-import-position

from experiments import parse_flags_or_exit  # pylint: disable=wrong-import-position
from robustdata import sweep  # pylint: disable=wrong-import-position

_CONFIG = flags.DEFINE_string(
    "config", None, "A config file path with get_sweep(), optionally with ':variant'.")
_WORKDIR = flags.DEFINE_string("workdir", "runs", "Runs go to <workdir>/<name>-<config hash>/.")
_JOBS = flags.DEFINE_integer("jobs", 1, "Points run at a time (1: in this process).", lower_bound=1)
_METRIC = flags.DEFINE_string(
    "metric", "", "The metric of the closing table (default: test_accuracy or the first of "
    "the standard metrics that every run reports).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if not _CONFIG.value:
    raise app.UsageError("--config is required")
  return sweep.sweep_cli(_CONFIG.value, _WORKDIR.value, jobs=_JOBS.value,
                         metric=_METRIC.value or None, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags_or_exit)
