"""Campaign: the spurious-correlation tables of docs/results/spurious.md. ERM, group
up-sampling, GroupDRO, JTT, DFR and PDE on spuco_digits, and ERM vs PDE on the PDE paper's
synthetic patch data; each config's default variant, seeds 0, 1, 2.

Command:   python -m experiments.sweep --config=configs/campaigns/spurious.py \
               --workdir=runs/spurious_table
           (`:spuco`, `:synthetic` or `:nogroups` runs one of the tables; `:nogroups` is
           LfF, SPARE and CnC, the methods that use no group labels in training), then the
           `python -m experiments.report runs/spurious_table --sweep=...` commands of
           docs/results/spurious.md print the tables.
Hardware:  2 shared CPU cores. Time: ~13 minutes for the 24 runs, one after another.
Expected:  spuco_digits worst-group accuracy ERM 0.360 ± 0.110, GroupDRO 0.594 ± 0.025, DFR
           0.750 ± 0.035, PDE 0.656 ± 0.015 (population std over the seeds, commit 5a9383e).
Results:   docs/results/spurious.md
"""

SEEDS = (0, 1, 2)
SPUCO = ("erm", "upsample", "groupdro", "jtt", "dfr", "pde")  # the table's row order
SYNTHETIC = ("erm", "pde")
NOGROUPS = ("lff", "spare", "cnc")  # spare and cnc chain their own inference stages


def get_sweep(arg=None):
  """Every (method, seed) of the chosen tables ('spuco', 'synthetic', 'nogroups'; the first two
  without arg)."""
  tables = arg.split(",") if arg else ["spuco", "synthetic"]
  files = {"spuco": [f"configs/spuco/{m}_digits.py" for m in SPUCO],
           "synthetic": [f"configs/pde/synthetic_{m}.py" for m in SYNTHETIC],
           "nogroups": [f"configs/spuco/{m}_digits.py" for m in NOGROUPS]}
  unknown = sorted(set(tables) - set(files))
  if unknown:
    raise ValueError(f"unknown table {unknown}; allowed: {sorted(files)}")
  return [{"config": path, "seed": s} for t in tables for path in files[t] for s in SEEDS]
