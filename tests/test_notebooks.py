"""The notebooks in notebooks/: each runs top to bottom (nbclient driving a python3 ipykernel on
the CPU, from the notebook's folder) without an error or a file left beside it, and the
committed notebooks carry no outputs or execution counts."""

from __future__ import annotations

import glob
import os
import time

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
CELL_TIMEOUT_S = 600      # one cell; the longest runs a whole sweep (~30 s on 2 quiet cores)
STARTUP_TIMEOUT_S = 180   # the kernel's start, on a machine busy with the rest of the suite


def _name(path: str) -> str:
  return os.path.basename(path)


def test_the_three_notebooks_exist():
  names = {_name(p) for p in NOTEBOOKS}
  assert {"label_noise_width.ipynb", "dpsgd_clip_vs_noise.ipynb",
          "pde_vs_erm_groups.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_committed_notebook_is_stripped(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code, f"{_name(path)} has no code cells"
  dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
           and (c.outputs or c.execution_count is not None)]
  assert not dirty, (f"{_name(path)}: cells {dirty} hold outputs or execution counts; strip "
                     "them before committing (e.g. jupyter nbconvert --clear-output --inplace)")
  assert nb.metadata.get("kernelspec", {}).get("name") == "python3", nb.metadata


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_executes(path):
  nb = nbformat.read(path, as_version=4)
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")  # robustdata and configs
  before = sorted(os.listdir(NOTEBOOK_DIR))
  client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=STARTUP_TIMEOUT_S,
                          kernel_name="python3", allow_errors=False,
                          resources={"metadata": {"path": NOTEBOOK_DIR}})
  t0 = time.time()
  client.execute(env=env)  # a cell that raises fails here with its traceback
  seconds = time.time() - t0
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count is not None for c in code), f"{_name(path)}: a cell did not run"
  errors = [o for c in code for o in c.outputs if o.output_type == "error"]
  assert not errors, errors
  shown = {mime for c in code for o in c.outputs if o.output_type in ("display_data",
                                                                      "execute_result")
           for mime in o.get("data", {})}
  assert "text/markdown" in shown, f"{_name(path)} displayed no table"
  if _name(path) != "dpsgd_clip_vs_noise.ipynb":
    assert "image/png" in shown, f"{_name(path)} displayed no plot"
  assert sorted(os.listdir(NOTEBOOK_DIR)) == before, "the notebook wrote files in notebooks/"
  print(f"{_name(path)}: executed in {seconds:.1f} s")
