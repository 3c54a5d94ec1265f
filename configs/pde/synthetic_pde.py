"""PDE on the PDE paper's synthetic patch data: full-batch GD (SGD lr 0.03, momentum 0.9) for
801 steps on the group-balanced subset, then +100 unused examples every 101 steps (5 times).

Paper: Deng*, Yang*, et al., NeurIPS'23, synthetic experiments (spec §4): case 1 (core v_c*y/5,
spurious v_s*a, a = y w.p. 0.98); ERM learns the spurious direction, PDE the core one.
Command:   python -m experiments.main --config=configs/pde/synthetic_pde.py
           (variants: ':smoke' for tests, ':case2' swaps the strengths)
Hardware:  2 shared CPU cores. Time: ~60 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.914 ± 0.013, average_accuracy
           0.945 ± 0.002, core / spurious alignment 2.50 / 0.32 (seeds 0-2)
Results:   docs/results/spurious.md (pde_synthetic)
"""

from configs.pde import common
from robustdata import config_lib


def get_config(arg=None):
  return config_lib.finalize(common.pde_synthetic("pde", arg))


def get_sweep():
  """Three seeds (init and sampling order; the data stay fixed by config.data.seed)."""
  return [{"seed": s} for s in (0, 1, 2)]
