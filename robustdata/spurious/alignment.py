"""The PDE paper's feature-learning probe as a results report (spec §4, synthetic data).

On `pde_synthetic` with the `pde_conv` model, `synthetic_alignment(run_ctx)` returns the final
model's max-filter alignment with the core and spurious directions (`core_alignment`,
`spurious_alignment`, and their ratio); on any other dataset or model it returns {}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustdata.models.pde_conv import filter_alignment


def synthetic_alignment(run_ctx) -> dict[str, Any]:
  """{'core_alignment', 'spurious_alignment', 'core_to_spurious_alignment'} or {}."""
  info = getattr(run_ctx.data, "info", None) or {}
  params = run_ctx.state.params
  if run_ctx.config.data.name != "pde_synthetic" or "v_c" not in info or (
      not hasattr(params, "keys") or "kernel" not in params):
    return {}
  out = filter_alignment(params, np.asarray(info["v_c"]), np.asarray(info["v_s"]))
  out["core_to_spurious_alignment"] = out["core_alignment"] / max(out["spurious_alignment"],
                                                                  1e-12)
  return out


class ReportsAlignment:
  """Mixin for policies and objectives: adds `synthetic_alignment` to results.json."""

  def finalize(self, run_ctx) -> dict[str, Any]:
    return synthetic_alignment(run_ctx)
