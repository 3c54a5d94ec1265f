"""The command-line entry points: main (one run), sweep (a config's get_sweep) and report."""

import sys as _sys


def parse_flags_or_exit(argv):
  """absl's parser for experiments.sweep and experiments.report; a bad flag ends with one
  message and exit status 2."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=_sys.stderr)
    raise SystemExit(2) from None
