"""Tables and plots over finished runs: results grouped by config fields and averaged over the
runs of each group (seeds), as Markdown tables and PNG line plots.

A field is a dotted path into a run's config.json (`data.difficulty`) or a key of its
results.json (`epsilon`). Each cell is the mean ± the sample standard deviation (ddof=1; 0 for
a single run) and the number of runs n.

Column templates (`--columns`) lay out a table cell by cell, one row per group of `--rows`:
`HEADER=TEMPLATE`, the header ending at the last '=' before the template's first '{' or '['.
A template is text with placeholders `{EXPR[|STAT][:FORMAT]}`:
- EXPR: a field, `field?0` (0 where a run lacks it), or `a/b` (per run, a over b);
- STAT: `pm` (mean ± std, the default), `auto` (the value alone for one run, else mean ± std),
  `mean`, `std`, `first` (the run with the lowest seed; `--label` renames its text), `ratio`
  (mean over the mean of the `--reference` runs), `n` (the number of runs with a value);
- FORMAT: a Python format spec for the numbers (`.3f`, `,.0f`, `.1%`); infinities print as ∞.
A cell whose runs lack a placeholder's field is '-'. Alternatives `T1||T2` give the first
template whose condition `[field=v1,v2]` (at its start) holds for some of the row's runs; the
cell is made from those runs only."""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import sys
from typing import Any, Iterable, Mapping, Sequence

from robustdata import config_lib
from robustdata import run_dir as run_dir_lib
from robustdata.registry import ConfigError

MISSING = object()  # field_value of a field a run holds in neither config.json nor results.json
# Display-only fields (config_lib.DISPLAY_FIELDS): never a reason to split or pool a group.
DISPLAY = tuple(f"train.{f}" for f in config_lib.DISPLAY_FIELDS)


def is_display(field: str) -> bool:
  """Whether the dotted config field is display-only or part of its hashed record."""
  return field in DISPLAY or field.startswith(f"{config_lib.DISPLAY_SECTION}.")


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
  tuples (so values can key a group). A field in neither is `MISSING`."""
  for source in (run.config, run.results):
    node: Any = source
    for part in field.split("."):
      if not isinstance(node, dict) or part not in node:
        node = MISSING
        break
      node = node[part]
    if node is not MISSING:
      return _hashable(node)
  return MISSING


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
    return self.format(".4f")

  def format(self, fmt: str) -> str:
    """'mean ± std (n=k)' with the numbers in the format spec `fmt`."""
    return f"{self.mean:{fmt}} ± {self.std:{fmt}} (n={self.n})"


def summarize(values: Sequence[float], ddof: int = 1) -> Stat:
  """The Stat of `values` (at least one); `ddof=0` gives the population std."""
  n = len(values)
  mean = math.fsum(values) / n
  var = math.fsum((v - mean) ** 2 for v in values) / (n - ddof) if n > ddof else 0.0
  return Stat(mean, math.sqrt(var), n)


def _check_fields(runs: Sequence[Run], fields: Iterable[str], flag: str) -> None:
  for field in fields:
    lacking = [r.path for r in runs if field_value(r, field) is MISSING]
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
  ddof: int = 1  # of the cells' std: 1 sample, 0 population


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  """{dotted path: value} of every leaf of a nested dict (config.json); lists become tuples."""
  if not isinstance(d, dict):
    return {prefix: _hashable(d)}
  out = {}
  for k, v in d.items():
    out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
  return out


def _pooled(runs: Sequence[Run], groups: Iterable[Sequence[int]],
            grouped: Iterable[str]) -> tuple[str, ...]:
  """Config fields, other than `grouped`, seeds and display fields, that differ inside a group."""
  grouped = set(grouped) | {"seed"}  # seeds are averaged over
  pooled: set[str] = set()
  for members in groups:
    leaves = [flatten(runs[i].config) for i in members]
    for field in set().union(*leaves):
      if field in grouped or is_display(field):
        continue
      if len({repr(leaf.get(field, MISSING)) for leaf in leaves}) > 1:
        pooled.add(field)
  return tuple(sorted(pooled))


def _ordered(keys: Iterable[tuple], keep_order: bool) -> tuple[tuple, ...]:
  """Distinct `keys` in first-seen order (keep_order) or sorted by value."""
  keys = list(dict.fromkeys(keys))
  if keep_order:
    return tuple(keys)
  return tuple(sorted(keys, key=lambda key: tuple(_sort_key(v) for v in key)))


def table(runs: Sequence[Run], *, rows: Sequence[str] = (), cols: Sequence[str] = (),
          metric: str = "test_accuracy", ddof: int = 1, keep_order: bool = False) -> Table:
  """Groups `runs` by their `rows` and `cols` field values and summarizes `metric` per group;
  rows and columns sorted by value, or in the order of the runs with `keep_order`."""
  if not runs:
    raise ConfigError("no finished runs to report")
  _check_fields(runs, rows, "--rows")
  _check_fields(runs, cols, "--cols")
  values = metric_values(runs, metric)
  groups: dict[tuple[tuple, tuple], list[int]] = {}
  for i, run in enumerate(runs):
    key = (tuple(field_value(run, f) for f in rows), tuple(field_value(run, f) for f in cols))
    groups.setdefault(key, []).append(i)
  return Table(
      metric=metric, rows=tuple(rows), cols=tuple(cols),
      row_keys=_ordered((k[0] for k in groups), keep_order),
      col_keys=_ordered((k[1] for k in groups), keep_order),
      cells={k: summarize([values[i] for i in members], ddof) for k, members in groups.items()},
      pooled=_pooled(runs, groups.values(), [*rows, *cols]), num_runs=len(runs), ddof=ddof)


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
  lines.append(f"{t.metric}: mean ± {_std_kind(t.ddof)} std over the n runs of each cell; "
               f"{t.num_runs} runs.")
  if t.pooled:
    lines.append(f"Cells pool runs that differ in: {', '.join(t.pooled)} (add them to the "
                 "rows or columns to separate them).")
  return "\n".join(lines)


def metrics_markdown(runs: Sequence[Run], metrics: Sequence[str], *, rows: Sequence[str] = (),
                     cols: Sequence[str] = (), ddof: int = 1, keep_order: bool = False) -> str:
  """One column per metric (per value of the `cols` fields): `metrics` are 'key' or
  'key:FORMAT', each cell 'mean ± std (n=k)' with FORMAT (default .4f)."""
  specs = [m.partition(":")[::2] for m in metrics]
  tables = [(table(runs, rows=rows, cols=cols, metric=m, ddof=ddof, keep_order=keep_order),
             fmt or ".4f") for m, fmt in specs]
  row_keys = _ordered((k for t, _ in tables for k in t.row_keys), keep_order)
  header, columns = list(rows), []
  for t, fmt in tables:
    for ck in t.col_keys:
      header.append(", ".join([t.metric, *(f"{f}={_fmt_value(v)}" for f, v in zip(cols, ck))]))
      columns.append((t, fmt, ck))
  lines = [_md_line(header), "|" + "---|" * len(header)]
  for rk in row_keys:
    cells = []
    for t, fmt, ck in columns:
      s = t.cells.get((rk, ck))
      cells.append("—" if s is None else s.format(fmt))
    lines.append(_md_line([*(_fmt_value(v) for v in rk), *cells]))
  lines += ["", f"{', '.join(m for m, _ in specs)}: mean ± {_std_kind(ddof)} std over the n "
            f"runs of each cell; {len(runs)} runs."]
  pooled = sorted(set().union(*(t.pooled for t, _ in tables)))
  if pooled:
    lines.append(f"Cells pool runs that differ in: {', '.join(pooled)} (add them to the "
                 "rows or columns to separate them).")
  return "\n".join(lines)


def _std_kind(ddof: int) -> str:
  return "sample" if ddof == 1 else "population"


def _md_line(cells: Sequence[str]) -> str:
  """A Markdown table line; an empty cell is a single space."""
  return "|" + "".join(f" {c} |" if c else " |" for c in cells)


# --- Column templates. -------------------------------------------------------------------------

STATS = ("pm", "auto", "mean", "std", "first", "ratio", "n")


@dataclasses.dataclass(frozen=True)
class Condition:
  """`field=v1,v2`: runs whose `field` shows as one of the values (numbers compare as numbers)."""
  field: str
  values: tuple[str, ...]

  def holds(self, run: Run) -> bool:
    value = field_value(run, self.field)
    if value is MISSING:
      return False
    for want in self.values:
      if _fmt_value(value) == want or str(value) == want:
        return True
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
          if float(want) == float(value):
            return True
        except ValueError:
          pass
    return False


def parse_condition(text: str, flag: str) -> Condition:
  """`field=v1,v2` -> Condition; anything else is a ConfigError naming `flag`."""
  field, sep, values = text.partition("=")
  if not sep or not field.strip() or not values:
    raise ConfigError(f"{flag}={text!r}: expected FIELD=VALUE[,VALUE...]")
  return Condition(field.strip(), tuple(v.strip() for v in values.split(",")))


@dataclasses.dataclass(frozen=True)
class Placeholder:
  """`{EXPR|STAT:FORMAT}` of a template."""
  terms: tuple[tuple[str, float | None], ...]  # (field, default) of a or of a/b
  stat: str
  fmt: str


@dataclasses.dataclass(frozen=True)
class Template:
  """One alternative of a column: an optional condition and text parts and placeholders."""
  condition: Condition | None
  parts: tuple[str | Placeholder, ...]


@dataclasses.dataclass(frozen=True)
class Column:
  """A table column: its header and its alternative templates."""
  header: str
  templates: tuple[Template, ...]


def _split_top(text: str, sep: str) -> list[str]:
  """`text` split at `sep` outside braces and brackets."""
  out, depth, start, i = [], 0, 0, 0
  while i < len(text):
    c = text[i]
    if c in "{[":
      depth += 1
    elif c in "}]":
      depth -= 1
    elif depth == 0 and text.startswith(sep, i):
      out.append(text[start:i])
      i += len(sep)
      start = i
      continue
    i += 1
  return out + [text[start:]]


def _placeholder(body: str, where: str) -> Placeholder:
  expr, _, fmt = body.partition(":")
  expr, _, stat = expr.partition("|")
  stat = stat.strip() or "pm"
  if stat not in STATS:
    raise ConfigError(f"{where}: unknown statistic {stat!r} in {{{body}}}; allowed: {STATS}")
  terms = []
  for term in expr.split("/"):
    field, sep, default = term.strip().partition("?")
    if not field:
      raise ConfigError(f"{where}: empty field in {{{body}}}")
    try:
      terms.append((field, float(default) if sep else None))
    except ValueError:
      raise ConfigError(f"{where}: default {default!r} in {{{body}}} is not a number") from None
  if len(terms) > 2:
    raise ConfigError(f"{where}: {{{body}}} divides more than two fields")
  try:
    format(1.5, fmt)
  except ValueError as e:
    raise ConfigError(f"{where}: format {fmt!r} in {{{body}}}: {e}") from None
  return Placeholder(tuple(terms), stat, fmt)


def parse_column(spec: str) -> Column:
  """`HEADER=TEMPLATE[||TEMPLATE...]` (see the module docstring) -> Column."""
  where = f"--columns={spec!r}"
  starts = [i for i in (spec.find("{"), spec.find("[")) if i >= 0]
  split = spec.rfind("=", 0, min(starts) if starts else len(spec))
  if split < 0:
    raise ConfigError(f"{where}: expected HEADER=TEMPLATE, e.g. 'test acc={{test_accuracy:.3f}}'")
  header, templates = spec[:split].strip(), []
  for alternative in _split_top(spec[split + 1:], "||"):
    condition = None
    if alternative.startswith("["):
      end = alternative.find("]")
      if end < 0:
        raise ConfigError(f"{where}: unclosed '[' in {alternative!r}")
      condition = parse_condition(alternative[1:end], where)
      alternative = alternative[end + 1:]
    parts, text, i = [], "", 0
    while i < len(alternative):
      c = alternative[i]
      if alternative.startswith("{{", i) or alternative.startswith("}}", i):
        text, i = text + c, i + 2
      elif c == "{":
        end = alternative.find("}", i)
        if end < 0:
          raise ConfigError(f"{where}: unclosed '{{' in {alternative!r}")
        parts += [text, _placeholder(alternative[i + 1:end], where)]
        text, i = "", end + 1
      else:
        text, i = text + c, i + 1
    templates.append(Template(condition, tuple(p for p in [*parts, text] if p != "")))
  return Column(header, tuple(templates))


def _number(value: Any) -> Any:
  """A run's value as a float where it is a numeric string ('inf'), else as is."""
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      return value
  return value


def _expr_value(run: Run, terms) -> Any:
  values = []
  for field, default in terms:
    value = field_value(run, field)
    if value is MISSING or value is None:
      if default is None:
        return MISSING
      value = default
    values.append(_number(value))
  if len(values) == 1:
    return values[0]
  a, b = values
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
    return MISSING
  return a / b if b else math.nan


def _show(value: Any, fmt: str) -> str:
  if isinstance(value, float) and math.isinf(value):
    return "∞" if value > 0 else "-∞"
  if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
    return format(value, fmt)
  return _fmt_value(value)


@dataclasses.dataclass(frozen=True)
class _Context:
  ddof: int
  labels: Mapping[str, str]
  reference: Sequence[Run] | None


def _render(p: Placeholder, runs: Sequence[Run], ctx: _Context) -> str | None:
  """The placeholder's text over `runs` (sorted by seed), or None if no run has a value."""
  pairs = [(r, _expr_value(r, p.terms)) for r in runs]
  pairs = [(r, v) for r, v in pairs if v is not MISSING]
  if not pairs:
    return None
  if p.stat == "first":
    text = _show(pairs[0][1], p.fmt)
    return ctx.labels.get(text, text) if not p.fmt else text
  if p.stat == "n":
    return _show(len(pairs), p.fmt)
  bad = [r.path for r, v in pairs
         if not isinstance(v, (int, float)) or isinstance(v, bool)]
  if bad:
    raise ConfigError(f"{{{'/'.join(f for f, _ in p.terms)}}} is not a number in "
                      f"{_names(bad)}; only |first and |n show other values")
  stat = summarize([float(v) for _, v in pairs], ctx.ddof)
  if p.stat == "ratio":
    if not ctx.reference:
      raise ConfigError("|ratio needs --reference=FIELD=VALUE naming the reference runs")
    ref = [_expr_value(r, p.terms) for r in ctx.reference]
    ref = [float(v) for v in ref if v is not MISSING]
    if not ref:
      raise ConfigError(f"no --reference run has {'/'.join(f for f, _ in p.terms)}")
    return _show(stat.mean / summarize(ref).mean, p.fmt)
  if p.stat == "mean" or (p.stat == "auto" and stat.n == 1):
    return _show(stat.mean if p.stat == "mean" else float(pairs[0][1]), p.fmt)
  if p.stat == "std":
    return _show(stat.std, p.fmt)
  return f"{_show(stat.mean, p.fmt)} ± {_show(stat.std, p.fmt)}"


def _cell(column: Column, runs: Sequence[Run], ctx: _Context) -> str:
  for template in column.templates:
    chosen = [r for r in runs if template.condition is None or template.condition.holds(r)]
    if not chosen:
      continue
    out = []
    for part in template.parts:
      text = part if isinstance(part, str) else _render(part, chosen, ctx)
      if text is None:
        return "-"
      out.append(text)
    return "".join(out)
  return "-"


def column_markdown(runs: Sequence[Run], columns: Sequence[str | Column], *,
                    rows: Sequence[str] = (), reference: str | None = None,
                    labels: Mapping[str, str] | None = None, ddof: int = 1,
                    keep_order: bool = False) -> tuple[str, tuple[str, ...]]:
  """(the Markdown table of `columns`, one row per group of `rows` fields; the config fields
  pooled inside some row). Rows sorted by value, or in the order of the runs (keep_order)."""
  if not runs:
    raise ConfigError("no finished runs to report")
  columns = [c if isinstance(c, Column) else parse_column(c) for c in columns]
  if not columns:
    raise ConfigError("--columns: give at least one column")
  _check_fields(runs, rows, "--rows")
  ref_runs = None
  if reference:
    condition = parse_condition(reference, "--reference")
    ref_runs = [r for r in runs if condition.holds(r)]
    if not ref_runs:
      raise ConfigError(f"--reference={reference!r} matches none of the {len(runs)} runs")
  groups: dict[tuple, list[int]] = {}
  for i, run in enumerate(runs):
    groups.setdefault(tuple(field_value(run, f) for f in rows), []).append(i)
  ctx = _Context(ddof, dict(labels or {}), ref_runs)

  def by_seed(i: int):
    return (_sort_key(field_value(runs[i], "seed")), runs[i].path)

  lines = [_md_line([c.header for c in columns]), "|" + "---|" * len(columns)]
  for key in _ordered(groups, keep_order):
    members = [runs[i] for i in sorted(groups[key], key=by_seed)]
    lines.append(_md_line([_cell(c, members, ctx) for c in columns]))
  return "\n".join(lines), _pooled(runs, groups.values(), rows)


def select(runs: Sequence[Run], where: Sequence[str]) -> list[Run]:
  """The runs that meet every `where` entry: a condition 'field=v1,v2', or alternatives
  'a=v1|b=v2' of which one must hold."""
  entries = [[parse_condition(alt, "--where") for alt in w.split("|")] for w in where]
  return [r for r in runs if all(any(c.holds(r) for c in alts) for alts in entries)]


def sweep_runs(runs: Sequence[Run], spec: str) -> tuple[list[Run], list[str]]:
  """(the runs that are points of `--config=spec`'s get_sweep(), in the sweep's order; the run
  ids of the points without a finished run among `runs`)."""
  from robustdata import sweep  # pylint: disable=g-import-not-at-top  (sweep imports report)
  points, _ = sweep.load_points(spec)
  by_id: dict[str, list[Run]] = {}
  for run in runs:
    by_id.setdefault(os.path.basename(os.path.normpath(run.path)), []).append(run)
  ordered = [r for p in points for r in by_id.get(p.run_id, [])[:1]]
  return ordered, [p.run_id for p in points if p.run_id not in by_id]


def plot(runs: Sequence[Run], *, x: str, y: str, by: str | None = None, path: str,
         logx: bool = False) -> str:
  """A PNG line plot of `y` (mean, with a ± std band over the runs of each point) against the
  field `x` (on a log scale with `logx`), one line per value of the field `by`; returns `path`."""
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
  if logx:
    if not numeric or min(position.values()) <= 0:
      raise ConfigError(f"--logx: the values of {x!r} must be positive numbers, got "
                        f"{[_fmt_value(v) for v in xs]}")
    ax.set_xscale("log")
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


def _parse_labels(labels: Sequence[str]) -> dict[str, str]:
  out = {}
  for item in labels:
    value, sep, text = item.partition("=")
    if not sep or not value:
      raise ConfigError(f"--label={item!r}: expected VALUE=TEXT")
    out[value] = text
  return out


def report_cli(patterns: Sequence[str], *, rows: Sequence[str] = (), cols: Sequence[str] = (),
               metric: str = "test_accuracy", plot_spec: str | None = None,
               by: str | None = None, out: str | None = "report",
               metrics: Sequence[str] = (), columns: Sequence[str] = (),
               reference: str | None = None, labels: Sequence[str] = (),
               where: Sequence[str] = (), sweep: str | None = None, ddof: int = 1,
               logx: bool = False) -> int:
  """`experiments/report.py`: prints the table and writes <out>/report.md and, with
  `plot_spec` ('x:y' or 'x', y defaulting to `metric`), <out>/<y>_vs_<x>[_by_<by>].png.

  The table is `metric` by `rows` and `cols`, or one column per entry of `metrics`, or the
  column templates `columns` (one row per group of `rows`; notes go to stderr). `where`
  keeps the runs that meet its conditions; `sweep` keeps the points of that sweep, in its
  order. Bad input ends with one message and exit status 2."""
  try:
    runs, unfinished = find_runs(patterns)
    if unfinished:
      print(f"skipped {len(unfinished)} unfinished run director"
            f"{'y' if len(unfinished) == 1 else 'ies'} (no results.json)", file=sys.stderr)
    if sweep:
      runs, missing = sweep_runs(runs, sweep)
      if missing:
        print(f"{len(missing)} points of --sweep={sweep} have no finished run here: "
              f"{_names(missing)}", file=sys.stderr)
    runs = select(runs, where)
    if not runs:
      raise ConfigError("no finished runs to report" + (" meet --where" if where else ""))
    if plot_spec is not None:
      x, _, y = plot_spec.partition(":")
      if not x:
        raise ConfigError(f"--plot={plot_spec!r}: give 'x:y', a field and a metric")
      y = y or metric
    if by and plot_spec is None:
      raise ConfigError(f"--by={by!r} needs --plot=x:y")
    if logx and plot_spec is None:
      raise ConfigError("--logx needs --plot=x:y")
    if ddof not in (0, 1):
      raise ConfigError(f"--ddof={ddof}: allowed 0 (population std) or 1 (sample std)")
    if columns and (metrics or cols):
      raise ConfigError("--columns lays out the whole table; it takes --rows but not "
                        "--metrics or --cols")
    keep_order = bool(sweep)
    if columns:
      for field in {t[0] for c in map(parse_column, columns) for tpl in c.templates
                    for p in tpl.parts if isinstance(p, Placeholder) for t in p.terms}:
        if all(field_value(r, field) is MISSING for r in runs):
          print(f"note: no run has {field!r}; its cells are '-'", file=sys.stderr)
      text, pooled = column_markdown(runs, columns, rows=rows, reference=reference,
                                     labels=_parse_labels(labels), ddof=ddof,
                                     keep_order=keep_order)
      if pooled:
        print(f"note: rows pool runs that differ in: {', '.join(pooled)} (add them to --rows "
              "to separate them)", file=sys.stderr)
    elif metrics:
      text = metrics_markdown(runs, metrics, rows=rows, cols=cols, ddof=ddof,
                              keep_order=keep_order)
    else:
      text = to_markdown(table(runs, rows=rows, cols=cols, metric=metric, ddof=ddof,
                               keep_order=keep_order))
    print(text)
    if out:
      os.makedirs(out, exist_ok=True)
      with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    if plot_spec is not None:
      name = f"{_safe(y)}_vs_{_safe(x)}" + (f"_by_{_safe(by)}" if by else "") + ".png"
      path = plot(runs, x=x, y=y, by=by, path=os.path.join(out or ".", name), logx=logx)
      print(f"\nplot: {path}")
  except (ConfigError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0
