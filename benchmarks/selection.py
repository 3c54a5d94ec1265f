"""Facility-location selection speed: ours vs a brute-force NumPy greedy vs apricot-select.

One class of n Gaussian proxies in d dimensions, budget 10%, the same kernel for everyone
(default 'craig': M - d_ij). Prints one row per (n, d): wall times of `facility_location` per
method (selection and cluster-size weights), our speed-up (best exact method) over each peer and
the FL objective F(S) of every selected set (same kernel, true M), so quality is checked too.

  python benchmarks/selection.py --quick            # small sizes, a few minutes on 2 CPU cores
  python benchmarks/selection.py                    # n in {5k, 20k, 50k}, d in {10, 100}

Then, unless --no-crest, CREST's share of wall time in selection, QUAD and checks for a run of
configs/crest/digits.py and of the same config on CIFAR-10-shaped synthetic input (the `share`
sweep of configs/campaigns/selection.py, seed 0 only with --seed=0; runs are kept and reused
under --crest-workdir), tabled by experiments.report.

The 'reuse s' column times the dense method again with a SimilarityWorkspace that already holds
the n x n matrix of a previous call (repeated selection, e.g. CRAIG's reselection): it leaves
out the page faults of fresh memory, which on the 2-core CPU VM were ~0.45 s at n = 20,000.
'x apricot' uses the best cold time; 'x apr reuse' the reuse time.

Our time includes jit compilation (and apricot's numba compilation) unless --warmup. apricot
(optional, `pip install apricot-select`) gets a precomputed float32 similarity of the same
kernel; its time includes building it (NumPy). Peers are skipped where they would take
minutes or need > ~4 GB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from robustdata.selection import SimilarityWorkspace, facility_location, fl_value  # noqa: E402


def brute_force_greedy(x: np.ndarray, k: int, kernel: str) -> np.ndarray:
  """Textbook greedy: full similarity, every gain recomputed every step (O(k n^2))."""
  x = np.asarray(x, np.float32) - x.mean(axis=0)
  sq = np.einsum("ij,ij->i", x, x)
  dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
  sim = dist.max() - dist if kernel == "craig" else np.exp(-dist / x.shape[1])
  cur = np.zeros(len(x), np.float32)
  chosen = np.zeros(len(x), bool)
  order = []
  for _ in range(k):
    gains = np.maximum(sim - cur[:, None], 0.0).sum(axis=0)
    gains[chosen] = -np.inf
    j = int(np.argmax(gains))
    order.append(j)
    chosen[j] = True
    cur = np.maximum(cur, sim[:, j])
  return np.asarray(order)


def _timed(fn):
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="n in {2000, 5000}, warm-up on")
  parser.add_argument("--sizes", type=int, nargs="*", default=None)
  parser.add_argument("--dims", type=int, nargs="*", default=[10, 100])
  parser.add_argument("--kernel", default="craig", choices=["craig", "exp"])
  parser.add_argument("--methods", nargs="*", default=["lazy", "lazy_dense"],
                      help="of auto, dense, lazy_dense, lazy, stochastic, greedi")
  parser.add_argument("--fraction", type=float, default=0.1)
  parser.add_argument("--brute-max", type=int, default=None, help="largest n for brute force")
  parser.add_argument("--apricot-max", type=int, default=20000, help="largest n for apricot")
  parser.add_argument("--dense-max", type=int, default=20000, help="largest n for lazy_dense")
  parser.add_argument("--no-apricot", action="store_true")
  parser.add_argument("--warmup", action="store_true", help="compile before timing ours")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-crest", action="store_true", help="skip the CREST time-share runs")
  parser.add_argument("--crest-workdir", default="/tmp/selection_share")
  args = parser.parse_args()
  sizes = args.sizes or ([2000, 5000] if args.quick else [5000, 20000, 50000])
  brute_max = args.brute_max if args.brute_max is not None else (2000 if args.quick else 5000)
  warmup = args.warmup or args.quick

  apricot = None
  if not args.no_apricot:
    from third_party import apricot_bench
    apricot = apricot_bench if apricot_bench.available() else None
    if apricot is None:
      print("apricot-select not installed: its columns are skipped (pip install apricot-select)")
    elif warmup:  # numba compiles apricot's kernels on the first call
      apricot.select(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32), 4,
                     kernel=args.kernel)

  print(f"kernel={args.kernel}, budget={args.fraction:.0%} of n, one class, float32, "
        f"Gaussian proxies; times in seconds ({'warm' if warmup else 'incl. compile'})")
  dense = next((m for m in args.methods if m in ("lazy_dense", "dense")), None)
  header = ["n", "d", "k"] + [f"{m} s" for m in args.methods] + ["reuse s"] * bool(dense) + [
      "brute s", "apricot s", "x brute", "x apricot"] + ["x apr reuse"] * bool(dense) + [
          f"F {m}" for m in args.methods] + ["F brute", "F apricot"]
  print(" | ".join(header))
  rng = np.random.default_rng(args.seed)
  for n in sizes:
    for d in args.dims:
      x = rng.normal(size=(n, d)).astype(np.float32)
      k = max(1, int(round(args.fraction * n)))
      times, values, selected = {}, {}, {}
      for m in args.methods:
        if m in ("lazy_dense", "dense") and n > args.dense_max:
          times[m] = values[m] = None
          continue
        labels = np.zeros(n, np.int64)
        run = lambda: facility_location(x, labels, budget=k, kernel=args.kernel, method=m)[0]
        if warmup:
          run()
        selected[m], times[m] = _timed(run)
        values[m] = fl_value(x, selected[m], kernel=args.kernel)
      reuse_t = None
      if dense and times[dense] is not None:
        workspace = SimilarityWorkspace()
        for _ in range(2 if warmup else 1):  # fills the workspace (and compiles the donating build)
          first = facility_location(x, labels, budget=k, kernel=args.kernel, method=dense,
                                    workspace=workspace)[0]
        again, reuse_t = _timed(lambda: facility_location(
            x, labels, budget=k, kernel=args.kernel, method=dense, workspace=workspace)[0])
        assert np.array_equal(first, selected[dense]) and np.array_equal(again, first)
        workspace.clear()
      exact = [times[m] for m in args.methods if m not in ("stochastic", "greedi")]
      best = min([t for t in exact if t is not None] or [t for t in times.values() if t])
      brute_t = brute_v = apr_t = apr_v = None
      if n <= brute_max:
        sel, brute_t = _timed(lambda: brute_force_greedy(x, k, args.kernel))
        brute_v = fl_value(x, sel, kernel=args.kernel)
      if apricot is not None and n <= args.apricot_max:
        (sel, _), apr_t = _timed(lambda: apricot.select(x, k, kernel=args.kernel))
        apr_v = fl_value(x, sel, kernel=args.kernel)

      def fmt(v, spec):
        return "skipped" if v is None else format(v, spec)

      row = [str(n), str(d), str(k)] + [fmt(times[m], ".2f") for m in args.methods] + [
          fmt(reuse_t, ".2f")] * bool(dense) + [
          fmt(brute_t, ".2f"), fmt(apr_t, ".2f"),
          fmt(brute_t / best if brute_t else None, ".1f"),
          fmt(apr_t / best if apr_t else None, ".1f")] + [
              fmt(apr_t / reuse_t if apr_t and reuse_t else None, ".1f")] * bool(dense) + [
              fmt(values[m], ".6g") for m in args.methods] + [fmt(brute_v, ".6g"),
                                                              fmt(apr_v, ".6g")]
      print(" | ".join(row), flush=True)
  print(f"brute force skipped above n={brute_max} (O(k n^2): minutes); apricot above "
        f"n={args.apricot_max} (its dense n x n similarity needs > 4 GB at n=50k).")
  if not args.no_crest:  # the campaign's time-share runs, through the sweep and report commands
    share = f"configs/campaigns/selection.py:share{',s0' if args.seed == 0 else ''}"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for argv in (["experiments.sweep", f"--config={share}", f"--workdir={args.crest_workdir}"],
                 ["experiments.report", args.crest_workdir, "--rows=name", f"--sweep={share}",
                  "--columns=steps={steps|first}", "--columns=wall time (s)={wall_time_s|mean:.1f}",
                  "--columns=selection + checks (s)={selection_time_s|mean:.1f}",
                  "--columns=share={selection_time_s/wall_time_s|mean:.1%}",
                  f"--out={os.path.join(args.crest_workdir, 'report')}"]):
      subprocess.run([sys.executable, "-m", *argv], cwd=repo, check=True)


if __name__ == "__main__":
  main()
