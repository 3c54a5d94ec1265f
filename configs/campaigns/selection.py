"""Campaign: the data-efficiency tables of docs/results/data-efficiency.md on embedded digits.

Tables (variant tokens, combinable as `:budget,hard,share`; all without one):
- `budget`: digits, full data vs a random 20% subset per epoch, CRAIG and CREST (and CREST at
  τ = 0.3) at the same step budget, seeds 0, 1;
- `hard`: the same on the harder digits task (configs/crest/common.py), seed 0;
- `hard10`: the hard task at the CREST paper's 10% step budget (token `b10`), seeds 0, 1, 2;
- `augment`: strong augmentation of full data vs an FL coreset vs a random subset vs none,
  seeds 0, 1;
- `ordering`: proxy-norm ordering vs random reshuffling, a fixed order and GraB (on two
  gradient proxies), each with a constant and a decreasing (cosine) learning rate, seeds 0-4;
- `share`: CREST's share of wall time in selection and checks, on digits and on CIFAR-10-shaped
  synthetic input (CREST's digits config at 32x32x3, N = 5,000, 200 steps), seed 0;
- `s0` with any of them: seed 0 only.

Command:   python -m experiments.sweep --workdir=runs/selection_table \
               --config=configs/campaigns/selection.py:budget,hard,share
           then the `python -m experiments.report runs/selection_table --sweep=...` command of
           each table in docs/results/data-efficiency.md.
Hardware:  2 CPU cores, each run pinned to one (`taskset -c 0`). Time: ~12 minutes for
           budget,hard,share; ~12 minutes for hard10; ~12 minutes for ordering (80 runs).
Expected:  digits test accuracy full data 0.992 ± 0.003, random 20% 0.972 ± 0.003; hard task at
           10%: CREST 0.994 ± 0.003 at 0.47x full data's wall time (commits 311aec3, 6a7c280).
Results:   docs/results/data-efficiency.md
"""

CREST = "configs/crest/digits.py"
CRAIG = "configs/craig/digits.py"
AUGMENT = "configs/augment_coresets/digits.py"
ORDERING = "configs/ordering/digits.py"



def cifar_shaped_crest():
  """CREST's digits config on CIFAR-10-shaped synthetic input (32x32x3, N = 5,000, 200 steps):
  the `share` table's second row."""
  from robustdata import validation  # pylint: disable=g-import-not-at-top
  synth = validation.load_config_file(CREST).unlock()
  synth.name = "crest_cifar_shaped"
  synth.data.name = "cifar_shaped_synthetic"
  synth.data.num_train = 5000
  synth.data.num_test = 1000
  synth.data.upsample = 1
  synth.model.channels = (32, 64)
  synth.model.dense = 128
  synth.train.batch_size = 128
  synth.train.epochs = 50
  synth.policy.train_frac = 0.1          # T_e = 4 steps of 128 (200 steps)
  synth.policy.random_subset_size = 0.1  # 50 per class, as rho = 1% on 50k CIFAR-10
  synth.policy.min_train_size = 4000
  return synth.lock()


def _spec(path: str, *tokens: str) -> str:
  arg = ",".join(t for t in tokens if t)
  return f"{path}:{arg}" if arg else path


def _table(task: str) -> list[tuple[str, tuple[int, ...]]]:
  """(config spec, seeds) of each row of a table, in the table's row order."""
  if task in ("budget", "hard", "hard10"):
    size = "" if task == "budget" else "hard"
    b10 = "b10" if task == "hard10" else ""
    seeds = {"budget": (0, 1), "hard": (0,), "hard10": (0, 1, 2)}[task]
    rows = [_spec(CREST, size, "full"),  # b10 leaves full data as it is: the same run
            _spec(CREST, size, "random", b10), _spec(CRAIG, size, b10), _spec(CREST, size, b10)]
    if task != "hard10":
      rows.append(_spec(CREST, size, "loose"))
    return [(r, seeds) for r in rows]
  if task == "augment":
    return [(_spec(AUGMENT, a), (0, 1)) for a in ("none", "full_aug", "random", "")]
  if task == "ordering":
    return [(_spec(ORDERING, a, schedule), (0, 1, 2, 3, 4))
            for schedule in ("", "decreasing")
            for a in ("random", "fixed", "grab", "grab,linear", "", "descending", "examples",
                      "descending,examples")]
  if task == "share":
    return [(CREST, (0,)), (cifar_shaped_crest(), (0,))]
  raise ValueError(f"unknown table {task!r}; allowed: budget, hard, hard10, augment, ordering, "
                   "share")


def get_sweep(arg=None):
  """Every (row, seed) of the chosen tables, each run once (tables share some runs)."""
  tokens = arg.split(",") if arg else []
  tasks = [t for t in tokens if t != "s0"] or ["budget", "hard", "hard10", "augment",
                                                  "ordering", "share"]
  points = []
  for task in tasks:
    for row, seeds in _table(task):
      for seed in seeds[:1] if "s0" in tokens else seeds:
        point = {"config": row, "seed": seed}
        if point not in points:
          points.append(point)
  return points
