"""Campaign: the spurious-correlation tables of docs/results/spurious.md. ERM, group
up-sampling, GroupDRO, JTT, DFR and PDE on spuco_digits, and ERM vs PDE on the PDE paper's
synthetic patch data; each config's default variant, seeds 0, 1, 2. `:grid`: every spuco_digits
method (group labels used in training; groups inferred by JTT, clustering, EIIL, SSA or SPARE,
each x GroupDRO and x group-balanced batches; no groups) at difficulties magnitude_large and
magnitude_small x correlation strengths 0.95 and 0.99, seeds 0, 1, 2; `:agreement`: the
grid's inference stages (how well each recovers the true groups).

Command:   python -m experiments.sweep --config=configs/campaigns/spurious.py \
               --workdir=runs/spurious_table
           (`:spuco`, `:synthetic` or `:nogroups` runs one of the tables; `:nogroups` is
           LfF, SPARE and CnC, the methods that use no group labels in training), then the
           `python -m experiments.report runs/spurious_table --sweep=...` commands of
           docs/results/spurious.md print the tables.
           python -m experiments.sweep --config=configs/campaigns/spurious.py:grid \
               --workdir=runs/spurious_grid   (then `:agreement`, which reuses its stages)
Hardware:  2 shared CPU cores. Time: ~13 minutes for the 24 runs of the default tables, one
           after another; `:grid`: 240 runs (and their 4 reference and 24 inference stages)
           in ~45 minutes on one core.
Expected:  spuco_digits worst-group accuracy ERM 0.358 ± 0.025, GroupDRO 0.523 ± 0.081, DFR
           0.786 ± 0.035, PDE 0.690 ± 0.035 (population std over the seeds).
           `:grid` worst-group accuracy, magnitude_large / magnitude_small: strength 0.95
           GroupDRO 0.523 ± 0.081 / 0.842 ± 0.029, on JTT-inferred groups 0.523 ± 0.081 /
           0.811 ± 0.063, on clustered groups 0.523 ± 0.081 / 0.722 ± 0.055, ERM 0.358 ± 0.025 /
           0.680 ± 0.033; strength 0.99 GroupDRO 0.236 ± 0.172 / 0.755 ± 0.111, DFR
           0.565 ± 0.122 / 0.524 ± 0.072 (the commit of the grid's section).
Results:   docs/results/spurious.md
"""

SEEDS = (0, 1, 2)
SPUCO = ("erm", "upsample", "groupdro", "jtt", "dfr", "pde")  # the table's row order
SYNTHETIC = ("erm", "pde")
NOGROUPS = ("lff", "spare", "cnc")  # spare and cnc chain their own inference stages

# The `grid` table: spuco_digits at two difficulties x two correlation strengths.
GRID_DIFFICULTIES = ("magnitude_large", "magnitude_small")
GRID_STRENGTHS = (0.95, 0.99)  # 0.99: 6 minority train examples per class, 2 per val group
ANNOTATED = ("upsample", "groupdro", "balanced", "dfr", "pde")  # group labels used in training
INFERENCE = ("jtt", "cluster", "eiil", "ssa", "spare")  # configs/spuco/infer_<m>_digits.py
ROBUST = ("groupdro", "balanced")                       # configs/spuco/<r>_inferred_digits.py
OWN_INFERENCE = ("spare", "cnc")  # no-group methods whose chains hold an inference stage
NO_GROUPS = ("erm", "lff", "jtt", *OWN_INFERENCE)
TABLES = ("spuco", "synthetic", "nogroups", "grid", "agreement")


def _strength(value: float, stages: tuple[str, ...] = ()) -> dict:
  """Overrides setting the correlation strength of a run and of its upstream stages."""
  return {f"{s}data.spurious_correlation_strength": value for s in ("", *stages)}


def _grid_points(strength: float, seed: int, difficulty: str) -> list[dict]:
  """One cell's runs, in the table's row order: annotated, inferred, no groups."""
  chain = ("group_stage.", "group_stage.reference.")

  def plain(m: str) -> dict:
    return {"config": f"configs/spuco/{m}_digits.py", "seed": seed,
            "data.difficulty": difficulty, **_strength(strength)}

  points = [plain(m) for m in ANNOTATED]
  points += [{"config": f"configs/spuco/{r}_inferred_digits.py:{m},{difficulty},seed{seed}",
              **_strength(strength, chain)} for m in INFERENCE for r in ROBUST]
  points += [{"config": f"configs/spuco/{m}_digits.py:{difficulty},seed{seed}",
              **_strength(strength, chain)} if m in OWN_INFERENCE else plain(m)
             for m in NO_GROUPS]
  return points


def grid() -> list[dict]:
  """Strength, then seed, then difficulty, so that a cut-short sweep has whole cells first."""
  return [p for v in GRID_STRENGTHS for s in SEEDS for d in GRID_DIFFICULTIES
          for p in _grid_points(v, s, d)]


def agreement() -> list[dict]:
  """The inference stages of the grid's chains (grid runs them; here they are reused)."""
  return [{"config": f"configs/spuco/infer_{m}_digits.py:{d}",
           **_strength(v, ("reference.",))}
          for v in GRID_STRENGTHS for d in GRID_DIFFICULTIES for m in INFERENCE]


def get_sweep(arg=None):
  """Every point of the chosen tables (comma-separated, from TABLES; 'spuco' and 'synthetic'
  without arg)."""
  tables = arg.split(",") if arg else ["spuco", "synthetic"]
  unknown = sorted(set(tables) - set(TABLES))
  if unknown:
    raise ValueError(f"unknown table {unknown}; allowed: {sorted(TABLES)}")
  files = {"spuco": [f"configs/spuco/{m}_digits.py" for m in SPUCO],
           "synthetic": [f"configs/pde/synthetic_{m}.py" for m in SYNTHETIC],
           "nogroups": [f"configs/spuco/{m}_digits.py" for m in NOGROUPS]}
  built = {"grid": grid, "agreement": agreement}
  return [p for t in tables for p in (
      built[t]() if t in built else [{"config": path, "seed": s} for path in files[t]
                                     for s in SEEDS])]
