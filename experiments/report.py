"""A Markdown table (and optional line plot) of finished runs, averaged over seeds.

  python -m experiments.report runs/spuco_erm_digits-* --rows=data.difficulty \
      --cols=data.spurious_correlation_strength --metric=worst_group_accuracy
  python -m experiments.report runs/ --plot=privacy.target_epsilon:test_accuracy \
      --by=privacy.mode --out=report/

Arguments are run directories, globs of them or workdirs; unfinished runs are skipped. Fields
are dotted paths into config.json or result keys. Writes <out>/report.md and the plot's PNG.
"""

import sys

from absl import app, flags

from experiments import parse_flags_or_exit
from robustdata import report

_ROWS = flags.DEFINE_list("rows", [], "Fields whose values make the table's rows.")
_COLS = flags.DEFINE_list("cols", [], "Fields whose values make the table's columns.")
_METRIC = flags.DEFINE_string("metric", "test_accuracy", "The result key in the cells.")
_PLOT = flags.DEFINE_string(
    "plot", None, "'x:y': a line plot of metric y (default --metric) against the field x.")
_BY = flags.DEFINE_string("by", None, "With --plot: one line per value of this field.")
_OUT = flags.DEFINE_string("out", "report", "Directory for report.md and the plot.")


def main(argv):
  return report.report_cli(argv[1:], rows=_ROWS.value, cols=_COLS.value, metric=_METRIC.value,
                           plot_spec=_PLOT.value, by=_BY.value, out=_OUT.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags_or_exit)
