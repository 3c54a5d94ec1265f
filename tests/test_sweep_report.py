"""Sweeps (resume, reuse, bad get_sweep input, --jobs) and reports (averages against a direct
NumPy computation, plots, missing metrics)."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import numpy as np
import pytest

from configs import quickstart
from robustdata import config_lib, report, runner, sweep, validation
from robustdata.registry import ConfigError
from robustdata.train import driver
from robustdata import run_dir as run_dir_lib
from tests.conftest import run_python

SMOKE_STEPS = 2  # quickstart smoke stopped after 2 steps: a real run in a few seconds


def _sweep_file(tmp_path, points: str, name: str = "sweep_cfg.py") -> str:
  path = tmp_path / name
  path.write_text(textwrap.dedent(f"""
      from configs import quickstart

      def get_config(arg=None):
        return quickstart.get_config(arg)

      def get_sweep():
        return {points}
      """))
  return str(path)


def _cli_config(**fields):
  """quickstart smoke as `experiments.main` would build it with --config.<field> overrides."""
  config = quickstart.get_config("smoke")
  for dotted, value in fields.items():
    *section, field = dotted.split("__")
    (config[section[0]] if section else config)[field] = value
  return config_lib.resolve(config)


def test_sweep_resumes_a_half_finished_sweep(tmp_path, monkeypatch, capsys):
  spec = _sweep_file(tmp_path, f"""[{{"seed": s, "train.max_steps": {SMOKE_STEPS}}}
                 for s in (0, 1, 2)]""")
  workdir = str(tmp_path / "runs")
  real_run, calls = runner.run, []

  def interrupt_seed_2(config, wd):  # the sweep is stopped while its third run starts
    calls.append(config_lib.run_id(config))
    if config.seed == 2:
      run_dir_lib.prepare(config_lib.resolve(config), wd)  # config.json, no results.json
      raise driver.Interrupted(signal.SIGINT, 0)
    return real_run(config, wd)

  monkeypatch.setattr(runner, "run", interrupt_seed_2)
  assert sweep.sweep_cli(f"{spec}:smoke", workdir) == 128 + signal.SIGINT
  ids = [config_lib.run_id(_cli_config(seed=s, train__max_steps=SMOKE_STEPS))
         for s in (0, 1, 2)]
  assert calls == ids  # the sweep's ids are those of the same runs from the command line
  finished, unfinished = report.find_runs([workdir])
  assert sorted(os.path.basename(r.path) for r in finished) == sorted(ids[:2])
  assert [os.path.basename(p) for p in unfinished] == [ids[2]]
  mtimes = {i: os.stat(os.path.join(workdir, i, "results.json")).st_mtime_ns for i in ids[:2]}

  calls.clear()
  monkeypatch.setattr(runner, "run", lambda config, wd: (calls.append(config_lib.run_id(config)),
                                                        real_run(config, wd))[1])
  capsys.readouterr()
  assert sweep.sweep_cli(f"{spec}:smoke", workdir) == 0
  out = capsys.readouterr().out
  assert calls == [ids[2]]  # only the unfinished point runs again
  assert {i: os.stat(os.path.join(workdir, i, "results.json")).st_mtime_ns
          for i in ids[:2]} == mtimes
  assert out.count("reused") == 2 and "[3/3]" in out and "ETA" in out
  accs = []
  for i in ids:
    with open(os.path.join(workdir, i, "results.json")) as f:
      accs.append(json.load(f)["test_accuracy"])
  # No field but the seed varies, so the closing table is one cell over the three seeds.
  assert f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f} (n=3)" in out


@pytest.mark.parametrize("points,message", [
    ('[{"seed": 0}, {"train.epochz": 1}]', "config.train.epochz is not a known field"),
    ('[{"seed": 0}, {"optimm.learning_rate": 0.1}]', "config.optimm.learning_rate is not a"),
    ('[{"train.epochs": "two"}]', "config.train.epochs='two'"),
    ('[{"seed": 0}, {"seed": 0, "train.epochs": 1}]',
     "points 0 (seed=0) and 1 (seed=0, train.epochs=1) are the same run"),
    ('["configs/quickstart.py:smoke", "configs/quickstart.py:smoke"]',
     "points 0 (configs/quickstart.py:smoke) and 1 (configs/quickstart.py:smoke)"),
    ('["configs/quickstart.py:bogus"]', "get_sweep() point 0: --config=configs/quickstart.py"),
    ('[3]', "get_sweep() point 0 is 3"),
    ('[]', "expected a non-empty list"),
])
def test_bad_sweep_stops_before_anything_runs(tmp_path, monkeypatch, capsys, points, message):
  monkeypatch.setattr(runner, "run", lambda *a: pytest.fail("a run started"))
  spec = _sweep_file(tmp_path, points)
  with pytest.raises(ConfigError) as e:
    sweep.load_points(f"{spec}:smoke")
  assert message in str(e.value)
  assert sweep.sweep_cli(f"{spec}:smoke", str(tmp_path / "runs")) == 2
  assert message in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "runs")


def test_config_without_get_sweep_is_an_error(tmp_path):
  with pytest.raises(ConfigError, match=r"configs/quickstart.py defines no get_sweep\(\)"):
    sweep.load_points("configs/quickstart.py:smoke")


def test_sweep_points_from_config_specs(tmp_path):
  """A get_sweep() of 'file.py:variant' strings (as configs/friendly_noise returns): each is
  loaded like --config and is its own run; the swept fields are those that differ."""
  spec = _sweep_file(tmp_path, '["configs/quickstart.py:smoke", "configs/quickstart.py"]')
  points, swept = sweep.load_points(spec)
  assert [p.label for p in points] == ["configs/quickstart.py:smoke", "configs/quickstart.py"]
  assert swept == ["name", "train.epochs"]
  for point, arg in zip(points, ("smoke", None)):
    expected = config_lib.resolve(validation.load_config_file(
        "configs/quickstart.py" + (f":{arg}" if arg else "")))
    assert point.run_id == config_lib.run_id(expected)


# --- Reports over fabricated run directories. -----------------------------------------------

DIFFICULTIES = ("easy", "hard")
STRENGTHS = (0.9, 0.99)


def _fake_runs(root, *, seeds=(0, 1, 2), metric="worst_group_accuracy", lacking=()):
  """Run dirs written by hand: config.json and results.json with random metrics."""
  rng = np.random.default_rng(7)
  written = {}
  for d in DIFFICULTIES:
    for s in STRENGTHS:
      for seed in seeds:
        path = root / f"run-{d}-{s}-{seed}"
        path.mkdir(parents=True)
        config = {"seed": seed, "name": "run", "data": {"difficulty": d,
                                                         "spurious_correlation_strength": s}}
        results = {"test_accuracy": float(rng.uniform()), metric: float(rng.uniform()),
                   "epsilon": float(rng.uniform(1, 8)), "seed": seed}
        if str(path) in lacking or path.name in lacking:
          del results[metric]
        (path / "config.json").write_text(json.dumps(config))
        (path / "results.json").write_text(json.dumps(results))
        written[str(path)] = (config, results)
  (root / "run-unfinished").mkdir()
  (root / "run-unfinished" / "config.json").write_text(json.dumps({"seed": 9}))
  return written


def test_report_averages_equal_a_direct_computation(tmp_path, capsys):
  written = _fake_runs(tmp_path)
  runs, unfinished = report.find_runs([str(tmp_path / "run-*")])
  assert len(runs) == 12 and [os.path.basename(p) for p in unfinished] == ["run-unfinished"]
  t = report.table(runs, rows=["data.difficulty"], cols=["data.spurious_correlation_strength"],
                   metric="worst_group_accuracy")
  assert t.row_keys == (("easy",), ("hard",)) and t.col_keys == ((0.9,), (0.99,))
  for d in DIFFICULTIES:
    for s in STRENGTHS:
      values = np.array([r["worst_group_accuracy"] for c, r in written.values()
                         if c["data"] == {"difficulty": d, "spurious_correlation_strength": s}],
                        dtype=np.float64)
      cell = t.cells[((d,), (s,))]
      assert cell.n == 3
      np.testing.assert_allclose(cell.mean, values.mean(), rtol=1e-12)
      np.testing.assert_allclose(cell.std, values.std(ddof=1), rtol=1e-12)
  assert t.pooled == ()

  # A result key groups too; columns absent: one column, rows over the seeds' difficulties.
  by_seed = report.table(runs, rows=["seed"], metric="epsilon")
  assert set(by_seed.pooled) == {"data.difficulty", "data.spurious_correlation_strength"}
  for seed in (0, 1, 2):
    values = [r["epsilon"] for c, r in written.values() if c["seed"] == seed]
    np.testing.assert_allclose(by_seed.cells[((seed,), ())].mean, np.mean(values), rtol=1e-12)

  out = tmp_path / "out"
  code = report.report_cli([str(tmp_path)], rows=["data.difficulty"],
                           cols=["data.spurious_correlation_strength"],
                           metric="worst_group_accuracy", out=str(out))
  captured = capsys.readouterr()
  assert code == 0 and "skipped 1 unfinished run directory" in captured.err
  text = (out / "report.md").read_text()
  assert text.strip() == captured.out.strip()
  cell = t.cells[(("hard",), (0.99,))]
  assert "| hard | " in text and f"{cell.mean:.4f} ± {cell.std:.4f} (n=3)" in text
  assert "data.spurious_correlation_strength=0.99" in text


def test_where_conditions_and_alternatives_match_a_direct_filter(tmp_path):
  written = _fake_runs(tmp_path)
  runs, _ = report.find_runs([str(tmp_path / "run-*")])
  d0, s0 = DIFFICULTIES[0], STRENGTHS[0]
  got = report.select(runs, [f"data.difficulty={d0}|seed=2",
                             f"data.spurious_correlation_strength={s0}"])
  want = {p for p, (c, _) in written.items()
          if (c["data"]["difficulty"] == d0 or c["seed"] == 2)
          and c["data"]["spurious_correlation_strength"] == s0}
  assert {r.path for r in got} == want and len(want) == 4  # easy: 3 seeds; hard: seed 2
  with pytest.raises(ConfigError, match="--where='seed'"):
    report.select(runs, ["data.difficulty=x|seed"])


def test_report_plot_is_written(tmp_path):
  _fake_runs(tmp_path / "runs")
  out = tmp_path / "out"
  assert report.report_cli([str(tmp_path / "runs")], metric="test_accuracy",
                           plot_spec="data.spurious_correlation_strength:worst_group_accuracy",
                           by="data.difficulty", out=str(out)) == 0
  png = out / "worst_group_accuracy_vs_data.spurious_correlation_strength_by_data.difficulty.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
  categorical = report.plot(report.find_runs([str(tmp_path / "runs")])[0], x="data.difficulty",
                            y="epsilon", path=str(out / "cat.png"))
  assert os.path.getsize(categorical) > 5000


def test_missing_metric_error_names_the_runs(tmp_path, capsys):
  _fake_runs(tmp_path, lacking=("run-hard-0.9-1", "run-easy-0.99-2"))
  runs, _ = report.find_runs([str(tmp_path)])
  with pytest.raises(ConfigError) as e:
    report.table(runs, rows=["data.difficulty"], metric="worst_group_accuracy")
  message = str(e.value)
  assert "'worst_group_accuracy' is missing from the results of 2 of 12 runs" in message
  assert str(tmp_path / "run-hard-0.9-1") in message
  assert str(tmp_path / "run-easy-0.99-2") in message
  assert "run-easy-0.9-0" not in message
  assert report.report_cli([str(tmp_path)], rows=["data.nope"], out=None) == 2
  assert "--rows field 'data.nope' is neither a config field nor a result key" in (
      capsys.readouterr().err)
  with pytest.raises(ConfigError, match="matches no file"):
    report.find_runs([str(tmp_path / "nothing-*")])


@pytest.mark.slow
def test_sweep_cli_runs_points_in_parallel_jobs(tmp_path):
  spec = _sweep_file(tmp_path, f'[{{"seed": s, "train.max_steps": {SMOKE_STEPS}}} for s in (3, 4)]')
  workdir = tmp_path / "runs"
  proc = run_python(["-m", "experiments.sweep", f"--config={spec}:smoke",
                     f"--workdir={workdir}", "--jobs=2"], timeout=300)
  ids = [config_lib.run_id(_cli_config(seed=s, train__max_steps=SMOKE_STEPS)) for s in (3, 4)]
  for i in ids:
    assert os.path.isfile(workdir / i / "results.json"), proc.stdout
    assert os.path.isfile(workdir / sweep.LOG_DIR / f"{i}.log")
  assert "2 at a time" in proc.stdout and "[2/2]" in proc.stdout
  accs = [json.loads((workdir / i / "results.json").read_text())["test_accuracy"] for i in ids]
  assert f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f} (n=2)" in proc.stdout


def test_sweep_points_naming_their_config_need_no_get_config(tmp_path):
  """A campaign file: points {"config": spec, **overrides} (or a built ConfigDict), a variant
  passed to get_sweep(arg), no get_config; a bare overrides point there is an error."""
  path = tmp_path / "campaign.py"
  path.write_text(textwrap.dedent("""
      from robustdata import validation

      def get_sweep(arg=None):
        built = validation.load_config_file("configs/quickstart.py:smoke")
        built.seed = 5
        seeds = (0, 1) if arg == "two" else (0,)
        return ([{"config": "configs/quickstart.py:smoke", "seed": s} for s in seeds]
                + [{"config": built, "train.epochs": 3}])
      """))
  points, swept = sweep.load_points(f"{path}:two")
  assert [p.label for p in points[:2]] == ["configs/quickstart.py:smoke, seed=0",
                                           "configs/quickstart.py:smoke, seed=1"]
  assert points[2].label.startswith("config '") and points[2].label.endswith(", train.epochs=3")
  assert [p.run_id for p in points[:2]] == [
      config_lib.run_id(_cli_config(seed=s)) for s in (0, 1)]
  assert points[2].run_id == config_lib.run_id(_cli_config(seed=5, train__epochs=3))
  assert swept == ["seed", "train.epochs"]
  assert len(sweep.load_points(str(path))[0]) == 2

  path.write_text("def get_sweep():\n  return [{'seed': 1}]\n")
  with pytest.raises(ConfigError, match="defines no get_config.*'config' key"):
    sweep.load_points(str(path))
  with pytest.raises(ConfigError, match="takes no variant"):
    sweep.load_points(f"{path}:two")


def test_report_metrics_columns_and_logx(tmp_path, capsys):
  written = _fake_runs(tmp_path / "runs")
  code = report.report_cli([str(tmp_path / "runs")], rows=["data.difficulty"],
                           metrics=["worst_group_accuracy:.2f", "epsilon"], ddof=0, out=None)
  text = capsys.readouterr().out
  assert code == 0
  assert text.splitlines()[0] == "| data.difficulty | worst_group_accuracy | epsilon |"
  for d in DIFFICULTIES:
    w = np.array([r["worst_group_accuracy"] for c, r in written.values()
                  if c["data"]["difficulty"] == d])
    e = np.array([r["epsilon"] for c, r in written.values() if c["data"]["difficulty"] == d])
    assert (f"| {d} | {w.mean():.2f} ± {w.std():.2f} (n=6) | {e.mean():.4f} ± {e.std():.4f} "
            "(n=6) |") in text
  out = tmp_path / "out"
  assert report.report_cli([str(tmp_path / "runs")], plot_spec="data.spurious_correlation_strength:"
                           "epsilon", logx=True, out=str(out)) == 0
  assert (out / "epsilon_vs_data.spurious_correlation_strength.png").stat().st_size > 5000
  assert report.report_cli([str(tmp_path / "runs")], plot_spec="data.difficulty:epsilon",
                           logx=True, out=str(out)) == 2
  assert "--logx: the values of 'data.difficulty' must be positive numbers" in (
      capsys.readouterr().err)


def test_closing_table_leaves_out_a_field_only_some_runs_hold(tmp_path):
  """A sweep that mixes chained and plain configs: an upstream stage's field exists in some
  runs only; the sweep's summary table groups by the fields every run holds."""
  written = _fake_runs(tmp_path)
  outcomes = []
  for i, (path, (config, _)) in enumerate(sorted(written.items())):
    if config["data"]["difficulty"] == "hard":  # these runs chain an upstream stage
      config["group_stage"] = {"data": {"difficulty": "hard"}}
      with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    point = sweep.Point(i, os.path.basename(path), None, os.path.basename(path))
    outcomes.append(sweep.Outcome(point, "reused"))
  swept = ["data.difficulty", "group_stage.data.difficulty", "seed"]
  table = sweep.closing_table(outcomes, str(tmp_path), swept, "worst_group_accuracy")
  rows = [line for line in table.splitlines() if line.startswith("| easy") or
          line.startswith("| hard")]
  assert len(rows) == 2 and "group_stage" not in table, table
  easy = [r["worst_group_accuracy"] for c, r in written.values()
          if c["data"]["difficulty"] == "easy"]
  assert f"{np.mean(easy):.3f}" in rows[0], (rows, np.mean(easy))
