"""ERM on the PDE paper's synthetic patch data: full-batch GD, SGD lr 0.1, 401 steps.

Paper: Deng*, Yang*, et al., NeurIPS'23, synthetic experiments (spec §4): case 1 (core v_c*y/5,
spurious v_s*a, a = y w.p. 0.98); ERM learns the spurious direction, PDE the core one.
Command:   python -m experiments.main --config=configs/pde/synthetic_erm.py
           (variants: ':smoke' for tests, ':case2' swaps the strengths)
Hardware:  2 shared CPU cores. Time: ~21 s of training (+~20 s start-up).
Expected:  test worst_group_accuracy 0.000 ± 0.000, average_accuracy
           0.977 ± 0.000, core / spurious alignment 0.12 / 1.55 (seeds 0-2)
Results:   docs/results/spurious.md (pde_synthetic)
"""

from configs.pde import common
from robustdata import config_lib


def get_config(arg=None):
  return config_lib.finalize(common.pde_synthetic("erm", arg))


def get_sweep():
  """Three seeds (init and sampling order; the data stay fixed by config.data.seed)."""
  return [{"seed": s} for s in (0, 1, 2)]
