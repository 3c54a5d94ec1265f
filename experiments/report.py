"""A Markdown table (and optional line plot) of finished runs, averaged over seeds.

  python -m experiments.report runs/spuco_erm_digits-* --rows=data.difficulty \
      --cols=data.spurious_correlation_strength --metric=worst_group_accuracy
  python -m experiments.report runs/ --rows=method \
      --metrics=worst_group_accuracy:.3f,average_accuracy:.3f,wall_time_s:.1f
  python -m experiments.report runs/ --plot=privacy.target_epsilon:test_accuracy \
      --by=privacy.mode --out=report/
  python -m experiments.report runs/spurious --sweep=configs/campaigns/spurious.py:spuco \
      --rows=name --reference=name=spuco_groupdro_digits --ddof=0 \
      --columns='method={name|first}' --columns='worst-group acc={worst_group_accuracy:.3f}' \
      --columns='examples seen (x groupdro)={examples_seen|mean:,.0f} ({examples_seen|ratio:.2f})'

Arguments are run directories, globs of them or workdirs; unfinished runs are skipped. Fields
are dotted paths into config.json or result keys. --columns templates are described in
robustdata/report.py. Writes <out>/report.md and the plot's PNG.
"""

import sys

from absl import app, flags

from experiments import parse_flags_or_exit
from robustdata import report

_ROWS = flags.DEFINE_list("rows", [], "Fields whose values make the table's rows.")
_COLS = flags.DEFINE_list("cols", [], "Fields whose values make the table's columns.")
_METRIC = flags.DEFINE_string("metric", "test_accuracy", "The result key in the cells.")
_METRICS = flags.DEFINE_list(
    "metrics", [], "Several result keys, a column each, as 'key' or 'key:FORMAT' (e.g. .3f).")
_COLUMNS = flags.DEFINE_multi_string(
    "columns", [], "A column template 'HEADER=TEMPLATE' (repeat the flag per column), e.g. "
    "'test acc={test_accuracy|auto:.3f}'; one row per group of --rows.")
_REFERENCE = flags.DEFINE_string(
    "reference", None, "'FIELD=VALUE': the runs the templates' |ratio divides by.")
_LABEL = flags.DEFINE_multi_string(
    "label", [], "'VALUE=TEXT': show TEXT for VALUE in the templates' {field|first}.")
_WHERE = flags.DEFINE_multi_string(
    "where", [], "'FIELD=V1,V2': keep the runs whose FIELD is one of the values; 'A=V|B=W': "
    "the runs meeting either condition. Repeated flags must all hold.")
_SWEEP = flags.DEFINE_string(
    "sweep", None, "'file.py[:variant]': keep the runs of that sweep's points, in its order.")
_DDOF = flags.DEFINE_integer("ddof", 1, "Std over seeds: 1 sample, 0 population.")
_PLOT = flags.DEFINE_string(
    "plot", None, "'x:y': a line plot of metric y (default --metric) against the field x.")
_BY = flags.DEFINE_string("by", None, "With --plot: one line per value of this field.")
_LOGX = flags.DEFINE_bool("logx", False, "With --plot: a log-scale x axis.")
_OUT = flags.DEFINE_string("out", "report", "Directory for report.md and the plot.")


def main(argv):
  return report.report_cli(
      argv[1:], rows=_ROWS.value, cols=_COLS.value, metric=_METRIC.value,
      plot_spec=_PLOT.value, by=_BY.value, out=_OUT.value, metrics=_METRICS.value,
      columns=_COLUMNS.value, reference=_REFERENCE.value, labels=_LABEL.value,
      where=_WHERE.value, sweep=_SWEEP.value, ddof=_DDOF.value, logx=_LOGX.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags_or_exit)
