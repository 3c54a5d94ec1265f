"""Tables and plots over finished runs: results grouped by config fields and averaged over the
runs of each group (seeds), as Markdown tables and PNG line plots.

A field is a dotted path into a run's config.json (`data.difficulty`) or a key of its
results.json (`epsilon`). Each cell is the mean ± the sample standard deviation (ddof=1; 0 for
a single run) and the number of runs n."""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import sys
from typing import Any, Iterable, Sequence

from robustdata import config_lib
from robustdata import run_dir as run_dir_lib
from robustdata.registry import ConfigError

_MISSING = object()
# Display-only fields (config_lib.DISPLAY_FIELDS): never a reason to split or pool a group.
DISPLAY = tuple(f"train.{f}" for f in config_lib.DISPLAY_FIELDS)


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished run: its directory, config.json and results.json."""
  path: str
  config: dict[str, Any]
  results: dict[str, Any]


def read_run(path: str) -> Run | None:
  """The run in directory `path`, or None if it has not finished (no results.json)."""
  if not os.path.isfile(os.path.join(path, "results.json")):
    return None
  return Run(path, run_dir_lib.read_json_object(os.path.join(path, "config.json")),
             run_dir_lib.read_json_object(os.path.join(path, "results.json")))


def _is_run_dir(path: str) -> bool:
  return any(os.path.isfile(os.path.join(path, name)) for name in ("config.json", "results.json"))


def find_runs(patterns: Sequence[str]) -> tuple[list[Run], list[str]]:
  """(finished runs, unfinished run directories) in `patterns`: run directories, globs of
  them, or workdirs whose subdirectories are runs. A pattern that matches nothing is an
  error; files and directories that are not runs are passed over."""
  if not patterns:
    raise ConfigError("no run directories given; pass run directories, globs or a workdir")
  dirs: list[str] = []
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) or ([pattern] if os.path.exists(pattern) else [])
    if not matches:
      raise ConfigError(f"{pattern!r} matches no file or directory")
    for path in matches:
      if not os.path.isdir(path):
        continue
      if _is_run_dir(path):
        dirs.append(path)
      else:  # a workdir: its runs
        dirs.extend(p for p in sorted(glob.glob(os.path.join(path, "*")))
                    if os.path.isdir(p) and _is_run_dir(p))
  seen, runs, unfinished = set(), [], []
  for path in dirs:
    key = os.path.realpath(path)
    if key in seen:
      continue
    seen.add(key)
    run = read_run(path)
    if run is None:
      unfinished.append(path)
    else:
      runs.append(run)
  return runs, unfinished


def field_value(run: Run, field: str) -> Any:
  """`field` of `run`: a dotted path into config.json, else into results.json; lists become
  tuples (so values can key a group). A field in neither is `_MISSING`."""
  for source in (run.config, run.results):
    node: Any = source
    for part in field.split("."):
      if not isinstance(node, dict) or part not in node:
        node = _MISSING
        break
      node = node[part]
    if node is not _MISSING:
      return _hashable(node)
  return _MISSING


def _hashable(value: Any) -> Any:
  if isinstance(value, list):
    return tuple(_hashable(v) for v in value)
  if isinstance(value, dict):
    return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
  return value


def _sort_key(value: Any):
  """Numbers in numeric order, then strings, then anything else by repr (None among them)."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return (0, float(value), "")
  if isinstance(value, str):
    return (1, 0.0, value)
  return (2, 0.0, repr(value))


def _fmt_value(value: Any) -> str:
  if isinstance(value, tuple):
    return "(" + ", ".join(_fmt_value(v) for v in value) + ")"
  return f"{value:g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Stat:
  """Mean and sample standard deviation (ddof=1; 0 for one run) of n runs' values."""
  mean: float
  std: float
  n: int

  def __str__(self) -> str:
    return f"{self.mean:.4f} ± {self.std:.4f} (n={self.n})"


def summarize(values: Sequence[float]) -> Stat:
  """The Stat of `values` (at least one)."""
  n = len(values)
  mean = math.fsum(values) / n
  var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
  return Stat(mean, math.sqrt(var), n)


def _check_fields(runs: Sequence[Run], fields: Iterable[str], flag: str) -> None:
  for field in fields:
    lacking = [r.path for r in runs if field_value(r, field) is _MISSING]
    if lacking:
      raise ConfigError(f"{flag} field {field!r} is neither a config field nor a result key of "
                        f"{len(lacking)} of {len(runs)} runs: {_names(lacking)}")


def _names(paths: Sequence[str], limit: int = 10) -> str:
  more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
  return ", ".join(paths[:limit]) + more


def metric_values(runs: Sequence[Run], metric: str) -> list[float]:
  """`metric` of every run, from results.json; a run without it, or with a value that is not
  a number, is a ConfigError naming the runs."""
  lacking = [r for r in runs if metric not in r.results]
  if lacking:
    keys = sorted(k for k, v in lacking[0].results.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool))
    raise ConfigError(f"--metric={metric!r} is missing from the results of {len(lacking)} of "
                      f"{len(runs)} runs: {_names([r.path for r in lacking])}; the numeric "
                      f"result keys of the first: {keys}")
  bad = [r.path for r in runs if not isinstance(r.results[metric], (int, float))
         or isinstance(r.results[metric], bool)]
  if bad:
    raise ConfigError(f"--metric={metric!r} is not a number in the results of {_names(bad)} "
                      f"(e.g. {runs[0].results[metric]!r})")
  return [float(r.results[metric]) for r in runs]


@dataclasses.dataclass(frozen=True)
class Table:
  """`metric` over runs grouped by the values of the `rows` and `cols` fields."""
  metric: str
  rows: tuple[str, ...]
  cols: tuple[str, ...]
  row_keys: tuple[tuple, ...]
  col_keys: tuple[tuple, ...]
  cells: dict[tuple[tuple, tuple], Stat]
  pooled: tuple[str, ...]  # config fields other than seed that differ inside some cell
  num_runs: int


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  """{dotted path: value} of every leaf of a nested dict (config.json); lists become tuples."""
  if not isinstance(d, dict):
    return {prefix: _hashable(d)}
  out = {}
  for k, v in d.items():
    out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
  return out


def table(runs: Sequence[Run], *, rows: Sequence[str] = (), cols: Sequence[str] = (),
          metric: str = "test_accuracy") -> Table:
  """Groups `runs` by their `rows` and `cols` field values and summarizes `metric` per group."""
  if not runs:
    raise ConfigError("no finished runs to report")
  _check_fields(runs, rows, "--rows")
  _check_fields(runs, cols, "--cols")
  values = metric_values(runs, metric)
  groups: dict[tuple[tuple, tuple], list[int]] = {}
  for i, run in enumerate(runs):
    key = (tuple(field_value(run, f) for f in rows), tuple(field_value(run, f) for f in cols))
    groups.setdefault(key, []).append(i)
  grouped = set(rows) | set(cols) | {"seed"} | set(DISPLAY)  # seeds are averaged over
  pooled: set[str] = set()
  for members in groups.values():
    leaves = [flatten(runs[i].config) for i in members]
    for field in set().union(*leaves):
      if field in grouped or field.startswith(f"{config_lib.DISPLAY_SECTION}."):
        continue
      if len({repr(leaf.get(field, _MISSING)) for leaf in leaves}) > 1:
        pooled.add(field)

  def sort(key: tuple) -> tuple:
    return tuple(_sort_key(v) for v in key)

  return Table(
      metric=metric, rows=tuple(rows), cols=tuple(cols),
      row_keys=tuple(sorted({k[0] for k in groups}, key=sort)),
      col_keys=tuple(sorted({k[1] for k in groups}, key=sort)),
      cells={k: summarize([values[i] for i in members]) for k, members in groups.items()},
      pooled=tuple(sorted(pooled)), num_runs=len(runs))


def to_markdown(t: Table) -> str:
  """The table as Markdown: one column per row field, one per value of the column fields."""
  def col_name(key: tuple) -> str:
    if not t.cols:
      return t.metric
    return ", ".join(f"{f}={_fmt_value(v)}" for f, v in zip(t.cols, key))

  header = [*t.rows, *(col_name(k) for k in t.col_keys)] or [t.metric]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for rk in t.row_keys:
    cells = [str(t.cells[(rk, ck)]) if (rk, ck) in t.cells else "—" for ck in t.col_keys]
    lines.append("| " + " | ".join([*(_fmt_value(v) for v in rk), *cells]) + " |")
  lines.append("")
  lines.append(f"{t.metric}: mean ± sample std over the n runs of each cell; "
               f"{t.num_runs} runs.")
  if t.pooled:
    lines.append(f"Cells pool runs that differ in: {', '.join(t.pooled)} (add them to the "
                 "rows or columns to separate them).")
  return "\n".join(lines)


def plot(runs: Sequence[Run], *, x: str, y: str, by: str | None = None, path: str) -> str:
  """A PNG line plot of `y` (mean, with a ± std band over the runs of each point) against the
  field `x`, one line per value of the field `by`; returns `path`."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  t = table(runs, rows=(by,) if by else (), cols=(x,), metric=y)
  xs = [k[0] for k in t.col_keys]
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
  position = {v: (float(v) if numeric else float(i)) for i, v in enumerate(xs)}
  fig = Figure(figsize=(6, 4), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  for rk in t.row_keys:
    points = [(position[ck[0]], t.cells[(rk, ck)]) for ck in t.col_keys if (rk, ck) in t.cells]
    px = [p for p, _ in points]
    mean = [s.mean for _, s in points]
    std = [s.std for _, s in points]
    line, = ax.plot(px, mean, marker="o", label=_fmt_value(rk[0]) if by else y)
    ax.fill_between(px, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                    color=line.get_color(), alpha=0.2, linewidth=0)
  if not numeric:
    ax.set_xticks([position[v] for v in xs], [_fmt_value(v) for v in xs])
  ax.set_xlabel(x)
  ax.set_ylabel(f"{y} (mean ± std)")
  if by:
    ax.legend(title=by)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path)
  return path


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def report_cli(patterns: Sequence[str], *, rows: Sequence[str] = (), cols: Sequence[str] = (),
               metric: str = "test_accuracy", plot_spec: str | None = None,
               by: str | None = None, out: str | None = "report") -> int:
  """`experiments/report.py`: prints the table and writes <out>/report.md and, with
  `plot_spec` ('x:y' or 'x', y defaulting to `metric`), <out>/<y>_vs_<x>[_by_<by>].png.
  Bad input ends with one message and exit status 2."""
  try:
    runs, unfinished = find_runs(patterns)
    if unfinished:
      print(f"skipped {len(unfinished)} unfinished run director"
            f"{'y' if len(unfinished) == 1 else 'ies'} (no results.json)", file=sys.stderr)
    if plot_spec is not None:
      x, _, y = plot_spec.partition(":")
      if not x:
        raise ConfigError(f"--plot={plot_spec!r}: give 'x:y', a field and a metric")
      y = y or metric
    if by and plot_spec is None:
      raise ConfigError(f"--by={by!r} needs --plot=x:y")
    text = to_markdown(table(runs, rows=rows, cols=cols, metric=metric))
    print(text)
    if out:
      os.makedirs(out, exist_ok=True)
      with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    if plot_spec is not None:
      name = f"{_safe(y)}_vs_{_safe(x)}" + (f"_by_{_safe(by)}" if by else "") + ".png"
      path = plot(runs, x=x, y=y, by=by, path=os.path.join(out or ".", name))
      print(f"\nplot: {path}")
  except (ConfigError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0
