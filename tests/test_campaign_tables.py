"""The campaign tables (configs/campaigns/*.py) through the report command: fabricated finished
runs of every sweep point -> the Markdown of docs/results, written out here by hand from the
fabricated numbers (population std over the seeds, as the tables state)."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from robustdata import config_lib, report, sweep
from tests.conftest import REPO

# The report flags of docs/results/*.md, per table.
SPURIOUS = dict(
    rows=["name"], ddof=0,
    labels=[f"spuco_{m}_digits={m}" for m in ("erm", "upsample", "groupdro", "jtt", "dfr", "pde")]
    + [f"pde_synthetic_{m}={m}" for m in ("erm", "pde")],
    columns=["method={name|first}", "worst-group acc={worst_group_accuracy:.3f}",
             "average acc={average_accuracy:.3f}", "wall time (s)={wall_time_s:.1f}",
             "examples seen (x {ref})={{examples_seen|mean:,.0f}} ({{examples_seen|ratio:.2f}})",
             "core / spurious alignment={core_alignment:.2f} / {spurious_alignment:.2f}"])
AGREEMENT = dict(
    rows=["data.spurious_correlation_strength", "data.difficulty", "inference.method"], ddof=0,
    columns=["strength={data.spurious_correlation_strength|first}",
             "difficulty={data.difficulty|first}", "inference={inference.method|first}",
             "ARI={adjusted_rand_index|auto:.3f}",
             "minority recall={minority_group_recall|auto:.3f}",
             "minority precision={minority_group_precision|auto:.3f}",
             "groups={num_inferred_groups|first}", "time (s)={inference_time_s|auto:.1f}"])
SELECTION = dict(
    rows=["name"], ddof=0,
    columns=["method={name|first}", "test acc={test_accuracy|auto:.3f}",
             "wall time (s)={wall_time_s|auto:.1f}", "x full time={wall_time_s|ratio:.2f}",
             "steps={steps|first}", "examples seen={examples_seen|mean:,.0f}",
             "selection time share={selection_time_s?0/wall_time_s|auto:.1%}"])
BUDGET_LABELS = ["full_digits=full data", "random_digits=random 20%", "craig_digits=CRAIG 20%",
                 "crest_digits=CREST 20%", "crest_loose_digits=CREST 20%, τ = 0.3"]
SHARE = dict(
    rows=["name"], ddof=0,
    labels=["crest_digits=digits 8x8x1, N=1,258",
            "crest_cifar_shaped=CIFAR-shaped 32x32x3, N=5,000"],
    columns=["input={name|first}", "steps={steps|first}", "wall time (s)={wall_time_s|mean:.1f}",
             "selection + checks (s)={selection_time_s|mean:.1f}",
             "share={selection_time_s/wall_time_s|mean:.1%}",
             "select / QUAD / check (s)={crest_select_time_s?0|mean:.1f} / "
             "{crest_quad_time_s?0|mean:.1f} / {crest_check_time_s?0|mean:.1f}",
             "selections={crest_selections|first}",
             "checks (triggered)={crest_checks|first} ({crest_check_triggers|first})"])


def _eps_column(eps: int) -> str:
  tail = "ε = {epsilon|first:.2f}, {wall_time_s|mean:.0f} s)"
  return (f"ε = {eps}=[privacy.mode=sgd,clip_only]{{test_accuracy:.3f}} (no noise, {tail}"
          f"||[privacy.target_epsilon={eps}]{{test_accuracy:.3f}} "
          f"(σ = {{noise_multiplier|first:.2f}}, {tail}")


DPSGD_ACCURACY = dict(
    where=["privacy.prune_sparsity=0"], rows=["privacy.mode"], ddof=0,
    columns=["mode={privacy.mode|first}", *(_eps_column(e) for e in (1, 3, 8))])
DPSGD_PRUNING = dict(
    where=["privacy.mode=dp_sgd", "privacy.target_epsilon=3"], rows=["privacy.prune_sparsity"],
    ddof=0, columns=["dp_sgd, ε = 3=", "sparsity={privacy.prune_sparsity|first:.0%}",
                     "effective dimension={effective_dimension|first:,} / "
                     "{total_dimension|first:,}",
                     "test accuracy={test_accuracy:.3f}", "ε={epsilon|first:.2f}",
                     "wall={wall_time_s|mean:.0f} s"])
CLIP = dict(
    rows=["poison.count", "method"], ddof=0,
    columns=["poisons per attack={poison.count|first}", "method={method|first}",
             "seeds={seed|n}", "zero-shot={zero_shot_accuracy|auto:.3f}",
             "linear probe={linear_probe_accuracy|auto:.3f}",
             "targeted ASR={targeted_asr|auto:.3f}", "backdoor ASR={backdoor_asr|auto:.3f}",
             "total poison ratio={poison_ratio|first:.3f}", "wall s={wall_time_s|mean:.0f}"])


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
  monkeypatch.chdir(REPO)  # the campaigns name their configs relative to the repository


def _write_runs(workdir, spec: str, results) -> list[sweep.Point]:
  """A finished run directory per point of `spec`: its config.json and results(point)."""
  points, _ = sweep.load_points(spec)
  for p in points:
    path = workdir / p.run_id
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(config_lib.canonical_json(p.config))
    (path / "results.json").write_text(json.dumps({"seed": p.config.seed, **results(p)}))
  return points


def _report(capsys, workdir, spec: str, **flags) -> str:
  capsys.readouterr()
  assert report.report_cli([str(workdir)], sweep=spec, out=None, **flags) == 0
  return capsys.readouterr().out.strip()


def _md(text: str) -> str:
  return textwrap.dedent(text).strip()


def test_spurious_tables(tmp_path, capsys):
  methods = {f"spuco_{m}_digits": i for i, m in enumerate(
      ("erm", "upsample", "groupdro", "jtt", "dfr", "pde"))}
  methods.update({"pde_synthetic_erm": 0, "pde_synthetic_pde": 1})

  def results(p):  # row i, seed s: values centred on the seed-1 run
    i, d = methods[p.config.name], p.config.seed - 1
    out = {"worst_group_accuracy": 0.3 + 0.1 * i + 0.03 * d,
           "average_accuracy": 0.9 - 0.05 * i + 0.015 * d, "wall_time_s": 10 + 2 * i + 1.5 * d,
           "examples_seen": 30000 + 1000 * i + 300 * p.config.seed}
    if p.config.name.startswith("pde_synthetic"):
      out.update(core_alignment=0.5 + 0.1 * d, spurious_alignment=0.3 + 0.05 * d)
    return out

  spec = "configs/campaigns/spurious.py"
  assert len(_write_runs(tmp_path, spec, results)) == 24
  # std (ddof=0) of (-d, 0, d) is d sqrt(2/3): 0.03 -> 0.024, 0.015 -> 0.012, 1.5 -> 1.2;
  # examples seen: mean 30,300 + 1,000 i over GroupDRO's 32,300.
  flags = {**SPURIOUS, "columns": [c.format(ref="groupdro") if "{ref}" in c else c
                                   for c in SPURIOUS["columns"]]}
  assert _report(capsys, tmp_path, f"{spec}:spuco", reference="name=spuco_groupdro_digits",
                 **flags) == _md("""
      | method | worst-group acc | average acc | wall time (s) | examples seen (x groupdro) | core / spurious alignment |
      |---|---|---|---|---|---|
      | erm | 0.300 ± 0.024 | 0.900 ± 0.012 | 10.0 ± 1.2 | 30,300 (0.94) | - |
      | upsample | 0.400 ± 0.024 | 0.850 ± 0.012 | 12.0 ± 1.2 | 31,300 (0.97) | - |
      | groupdro | 0.500 ± 0.024 | 0.800 ± 0.012 | 14.0 ± 1.2 | 32,300 (1.00) | - |
      | jtt | 0.600 ± 0.024 | 0.750 ± 0.012 | 16.0 ± 1.2 | 33,300 (1.03) | - |
      | dfr | 0.700 ± 0.024 | 0.700 ± 0.012 | 18.0 ± 1.2 | 34,300 (1.06) | - |
      | pde | 0.800 ± 0.024 | 0.650 ± 0.012 | 20.0 ± 1.2 | 35,300 (1.09) | - |
      """)
  flags = {**SPURIOUS, "columns": [c.format(ref="erm") if "{ref}" in c else c
                                   for c in SPURIOUS["columns"]]}
  assert _report(capsys, tmp_path, f"{spec}:synthetic", reference="name=pde_synthetic_erm",
                 **flags) == _md("""
      | method | worst-group acc | average acc | wall time (s) | examples seen (x erm) | core / spurious alignment |
      |---|---|---|---|---|---|
      | erm | 0.300 ± 0.024 | 0.900 ± 0.012 | 10.0 ± 1.2 | 30,300 (1.00) | 0.50 ± 0.08 / 0.30 ± 0.04 |
      | pde | 0.400 ± 0.024 | 0.850 ± 0.012 | 12.0 ± 1.2 | 31,300 (1.03) | 0.50 ± 0.08 / 0.30 ± 0.04 |
      """)


def test_spurious_grid_points():
  """The grid: 2 strengths x 3 seeds x 2 difficulties x 20 methods, the first strength first;
  a chain's strength and difficulty reach its inference and reference stages, whose runs are
  the agreement table's points."""
  from configs.campaigns import spurious  # pylint: disable=g-import-not-at-top
  from robustdata import validation  # pylint: disable=g-import-not-at-top
  grid = spurious.get_sweep("grid")
  assert len(grid) == 240
  strength = [p["data.spurious_correlation_strength"] for p in grid]
  assert strength == [0.95] * 120 + [0.99] * 120
  cell = spurious._grid_points(0.99, 1, "magnitude_small")  # pylint: disable=protected-access
  stages = set()
  for point in cell:
    config = sweep.apply_overrides(validation.load_config_file(point["config"]),
                                   {k: v for k, v in point.items() if k != "config"})
    assert config.seed == 1
    chain = [config]
    if "group_stage" in config:
      chain += [config.group_stage, config.group_stage.reference]
      stages.add(config_lib.run_id(config_lib.resolve(config.group_stage)))
    for c in chain:
      assert (c.data.difficulty, c.data.spurious_correlation_strength) == (
          "magnitude_small", 0.99)
  agreement, _ = sweep.load_points("configs/campaigns/spurious.py:agreement")
  assert len(agreement) == 20
  ours = {p.run_id for p in agreement if p.config.data.difficulty == "magnitude_small"
          and p.config.data.spurious_correlation_strength == 0.99}
  assert len(ours) == 5 and ours < stages  # + CnC's own stage


def test_spurious_agreement_table(tmp_path, capsys):
  methods = ("jtt", "cluster", "eiil", "ssa", "spare")

  def results(p):
    i = methods.index(p.config.inference.method)
    small = p.config.data.difficulty != "magnitude_large"
    strong = p.config.data.spurious_correlation_strength > 0.95
    return {"adjusted_rand_index": 1.0 - 0.1 * i * small - 0.05 * strong,
            "minority_group_recall": 1.0 - 0.2 * small, "minority_group_precision": 0.5 + 0.1 * i,
            "num_inferred_groups": 4 + small, "inference_time_s": 2.0 + i}

  spec = "configs/campaigns/spurious.py:agreement"
  _write_runs(tmp_path, spec, results)
  lines = _report(capsys, tmp_path, spec, **AGREEMENT).splitlines()
  assert lines[:2] == ["| strength | difficulty | inference | ARI | minority recall | "
                       "minority precision | groups | time (s) |",
                       "|---|---|---|---|---|---|---|---|"]
  assert len(lines) == 22
  assert lines[2] == "| 0.95 | magnitude_large | jtt | 1.000 | 1.000 | 0.500 | 4 | 2.0 |"
  assert lines[11] == "| 0.95 | magnitude_small | spare | 0.600 | 0.800 | 0.900 | 5 | 6.0 |"
  assert lines[21] == "| 0.99 | magnitude_small | spare | 0.550 | 0.800 | 0.900 | 5 | 6.0 |"


def test_selection_tables(tmp_path, capsys):
  rows = {"full_digits": 0, "random_digits": 1, "craig_digits": 2, "crest_digits": 3,
          "crest_loose_digits": 4}

  def results(p):
    if p.config.name == "crest_cifar_shaped":  # the share table's second row
      return {"steps": 200, "wall_time_s": 200.0, "selection_time_s": 100.0,
              "crest_select_time_s": 1.0, "crest_quad_time_s": 2.0, "crest_check_time_s": 3.0,
              "crest_selections": 78, "crest_checks": 195, "crest_check_triggers": 77}
    i, d = rows[p.config.name], 2 * p.config.seed - 1  # seeds 0, 1: d = -1, +1
    wall = 10 + 5 * i + 0.5 * d
    out = {"test_accuracy": 0.95 + 0.01 * i + 0.002 * d, "wall_time_s": wall,
           "steps": 780 if i == 0 else 180, "examples_seen": 10000 * (i + 1) + 10 * p.config.seed}
    if i >= 2:  # full data and random subsets report no selection time
      out["selection_time_s"] = wall * (0.2 + 0.1 * p.config.seed)
    if p.config.name == "crest_digits" and p.config.seed == 0:
      out.update(crest_select_time_s=1.0, crest_quad_time_s=2.0, crest_selections=57,
                 crest_checks=170, crest_check_triggers=56)
    return out

  spec = "configs/campaigns/selection.py"
  assert len(_write_runs(tmp_path, f"{spec}:budget,share", results)) == 11
  assert _report(capsys, tmp_path, f"{spec}:budget", labels=BUDGET_LABELS,
                 reference="name=full_digits", **SELECTION) == _md("""
      | method | test acc | wall time (s) | x full time | steps | examples seen | selection time share |
      |---|---|---|---|---|---|---|
      | full data | 0.950 ± 0.002 | 10.0 ± 0.5 | 1.00 | 780 | 10,005 | 0.0% ± 0.0% |
      | random 20% | 0.960 ± 0.002 | 15.0 ± 0.5 | 1.50 | 180 | 20,005 | 0.0% ± 0.0% |
      | CRAIG 20% | 0.970 ± 0.002 | 20.0 ± 0.5 | 2.00 | 180 | 30,005 | 25.0% ± 5.0% |
      | CREST 20% | 0.980 ± 0.002 | 25.0 ± 0.5 | 2.50 | 180 | 40,005 | 25.0% ± 5.0% |
      | CREST 20%, τ = 0.3 | 0.990 ± 0.002 | 30.0 ± 0.5 | 3.00 | 180 | 50,005 | 25.0% ± 5.0% |
      """)
  # The share table: seed 0 only, one run a row; a missing check time shows as 0.
  assert _report(capsys, tmp_path, f"{spec}:share", **SHARE) == _md("""
      | input | steps | wall time (s) | selection + checks (s) | share | select / QUAD / check (s) | selections | checks (triggered) |
      |---|---|---|---|---|---|---|---|
      | digits 8x8x1, N=1,258 | 180 | 24.5 | 4.9 | 20.0% | 1.0 / 2.0 / 0.0 | 57 | 170 (56) |
      | CIFAR-shaped 32x32x3, N=5,000 | 200 | 200.0 | 100.0 | 50.0% | 1.0 / 2.0 / 3.0 | 78 | 195 (77) |
      """)


def test_dpsgd_tables(tmp_path, capsys):
  accuracy = {("sgd", 3.0, 0.0): 0.98, ("clip_only", 3.0, 0.0): 0.88,
              ("noise_only", 1.0, 0.0): 0.94, ("noise_only", 3.0, 0.0): 0.97,
              ("noise_only", 8.0, 0.0): 0.98, ("dp_sgd", 1.0, 0.0): 0.63,
              ("dp_sgd", 3.0, 0.0): 0.87, ("dp_sgd", 8.0, 0.0): 0.88, ("dp_sgd", 3.0, 0.5): 0.86,
              ("dp_sgd", 3.0, 0.8): 0.58, ("dp_sgd", 3.0, 0.9): 0.34, ("dp_sgd", 3.0, 0.95): 0.21}
  sigma = {1.0: 6.0, 3.0: 2.5, 8.0: 1.25}

  def results(p):
    c = p.config.privacy
    noisy = c.mode in ("noise_only", "dp_sgd")
    return {"test_accuracy": accuracy[(c.mode, c.target_epsilon, c.prune_sparsity)]
                             + 0.01 * (p.config.seed - 1),
            "epsilon": c.target_epsilon if c.mode == "dp_sgd" else "inf",
            "noise_multiplier": sigma[c.target_epsilon] if noisy else 0.0,
            "wall_time_s": (40.0 if c.prune_sparsity else 10.0) + p.config.seed,
            "effective_dimension": round(13706 * (1 - c.prune_sparsity)),
            "total_dimension": 13706}

  spec = "configs/campaigns/dpsgd.py"
  assert len(_write_runs(tmp_path, spec, results)) == 36
  no_noise = "0.{} ± 0.008 (no noise, ε = ∞, 11 s)"
  assert _report(capsys, tmp_path, spec, **DPSGD_ACCURACY) == _md(f"""
      | mode | ε = 1 | ε = 3 | ε = 8 |
      |---|---|---|---|
      | sgd | {no_noise.format(980)} | {no_noise.format(980)} | {no_noise.format(980)} |
      | clip_only | {no_noise.format(880)} | {no_noise.format(880)} | {no_noise.format(880)} |
      | noise_only | 0.940 ± 0.008 (σ = 6.00, ε = ∞, 11 s) | 0.970 ± 0.008 (σ = 2.50, ε = ∞, 11 s) | 0.980 ± 0.008 (σ = 1.25, ε = ∞, 11 s) |
      | dp_sgd | 0.630 ± 0.008 (σ = 6.00, ε = 1.00, 11 s) | 0.870 ± 0.008 (σ = 2.50, ε = 3.00, 11 s) | 0.880 ± 0.008 (σ = 1.25, ε = 8.00, 11 s) |
      """)
  assert _report(capsys, tmp_path, spec, **DPSGD_PRUNING) == _md("""
      | dp_sgd, ε = 3 | sparsity | effective dimension | test accuracy | ε | wall |
      |---|---|---|---|---|---|
      | | 0% | 13,706 / 13,706 | 0.870 ± 0.008 | 3.00 | 11 s |
      | | 50% | 6,853 / 13,706 | 0.860 ± 0.008 | 3.00 | 41 s |
      | | 80% | 2,741 / 13,706 | 0.580 ± 0.008 | 3.00 | 41 s |
      | | 90% | 1,371 / 13,706 | 0.340 ± 0.008 | 3.00 | 41 s |
      | | 95% | 685 / 13,706 | 0.210 ± 0.008 | 3.00 | 41 s |
      """)


def test_clip_table(tmp_path, capsys):
  order = {"clip": 0, "roclip": 1, "safeclip": 2, "cleanclip": 3}

  def results(p):
    i, s = order[p.config.method], p.config.seed
    return {"method": p.config.method, "zero_shot_accuracy": 0.7 + 0.05 * i + 0.03 * (s - 1),
            "linear_probe_accuracy": 0.8, "targeted_asr": 0.25 * s,
            "backdoor_asr": 0.3 - 0.05 * i, "poison_ratio": 32 / 1568,
            "wall_time_s": 120.0 + 10 * i + s}

  spec = "configs/campaigns/clip.py:c16"
  points = _write_runs(tmp_path, spec, results)
  assert len(points) == 12
  # CleanCLIP fine-tunes the CLIP run of its seed and count, named by that run's directory.
  for p in points:
    if p.config.method == "cleanclip":
      clip = next(q for q in points if q.config.method == "clip" and q.config.seed == p.config.seed)
      assert p.config.contrastive.pretrained_checkpoint == f"runs/clip_table/{clip.run_id}"
  # targeted ASR (0, 0.25, 0.5): std sqrt(1/24) = 0.204.
  assert _report(capsys, tmp_path, spec, **CLIP) == _md("""
      | poisons per attack | method | seeds | zero-shot | linear probe | targeted ASR | backdoor ASR | total poison ratio | wall s |
      |---|---|---|---|---|---|---|---|---|
      | 16 | clip | 3 | 0.700 ± 0.024 | 0.800 ± 0.000 | 0.250 ± 0.204 | 0.300 ± 0.000 | 0.020 | 121 |
      | 16 | roclip | 3 | 0.750 ± 0.024 | 0.800 ± 0.000 | 0.250 ± 0.204 | 0.250 ± 0.000 | 0.020 | 131 |
      | 16 | safeclip | 3 | 0.800 ± 0.024 | 0.800 ± 0.000 | 0.250 ± 0.204 | 0.200 ± 0.000 | 0.020 | 141 |
      | 16 | cleanclip | 3 | 0.850 ± 0.024 | 0.800 ± 0.000 | 0.250 ± 0.204 | 0.150 ± 0.000 | 0.020 | 151 |
      """)


def test_campaign_run_ids_are_those_of_the_configs(monkeypatch):
  """A campaign point is the run `python -m experiments.main --config=<file>:<variant>
  --config.seed=<s>` makes (the run a campaign script made with the same config and seed)."""
  from robustdata import validation  # pylint: disable=g-import-not-at-top
  points, _ = sweep.load_points("configs/campaigns/selection.py:hard10")
  expected = []
  for spec in ("configs/crest/digits.py:hard,full,b10", "configs/crest/digits.py:hard,random,b10",
               "configs/craig/digits.py:hard,b10", "configs/crest/digits.py:hard,b10"):
    for seed in (0, 1, 2):
      config = validation.load_config_file(spec)
      with config.unlocked():
        config.seed = seed
        config.train.progress = "none"  # display-only: not part of the id
      expected.append(config_lib.run_id(config_lib.resolve(config)))
  assert [p.run_id for p in points] == expected


def test_template_errors_name_the_problem(tmp_path, capsys):
  run = tmp_path / "run-a"
  run.mkdir()
  (run / "config.json").write_text(json.dumps({"seed": 0, "name": "a"}))
  (run / "results.json").write_text(json.dumps({"test_accuracy": 0.5, "note": "x"}))
  for columns, reference, message in [
      (["acc={test_accuracy|median}"], None, "unknown statistic 'median'"),
      (["acc{test_accuracy}"], None, "expected HEADER=TEMPLATE"),
      (["acc={test_accuracy|ratio}"], None, "|ratio needs --reference"),
      (["acc={test_accuracy|ratio}"], "name=b", "--reference='name=b' matches none"),
      (["note={note:.2f}"], None, "{note} is not a number"),
      (["acc={test_accuracy:.2q}"], None, "format '.2q'")]:
    assert report.report_cli([str(tmp_path)], rows=["name"], columns=columns,
                             reference=reference, out=None) == 2
    assert message in capsys.readouterr().err
