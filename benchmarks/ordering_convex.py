"""Example ordering for without-replacement SGD on convex problems (spec §7): the campaign
behind docs/results/ordering.md and its plots.

  JAX_PLATFORMS=cpu python benchmarks/ordering_convex.py [--seeds=5] [--epochs=20]
      [--out=docs/results]

Problems (robustdata.selection.ordering_convex): least squares and l2-regularised logistic
regression, synthetic (condition number 100, a new draw per seed) and digits (train split,
unit-norm rows). Every ordering x {constant, decreasing} steps x {per-example, mini-batch 16}
x problem runs `--epochs` epochs from w0 ~ N(0, I/d) (per seed), in float64, vmapped over
seeds; distance ||w - w*|| and suboptimality F(w) - F(w*) against the float64 optimum.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402  pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # noqa: E402

from robustdata.selection import ordering_convex as oc  # noqa: E402

BATCH = 16
REPORT_EPOCHS = (1, 5, 20)
NAMES = {"random": "random reshuffling", "fixed": "fixed order", "ascending": "ascending norm",
         "descending": "descending norm", "grab": "GraB", "bound": "bound-selected (oracle)"}


def problems(seed: int) -> list[oc.ConvexProblem]:
  return [oc.synthetic_problem("least_squares", condition_number=100.0, l2=0.0, seed=seed),
          oc.synthetic_problem("logistic", condition_number=100.0, l2=1e-3, seed=seed),
          oc.digits_problem("least_squares", l2=1e-3),
          oc.digits_problem("logistic", l2=1e-3)]


def eta0(c: dict[str, float], batch_size: int) -> float:
  """0.5 / L_max per example; mini-batches take b times that, capped at 0.5 / L_F."""
  return 0.5 / c["L_max"] if batch_size == 1 else min(batch_size * 0.5 / c["L_max"],
                                                       0.5 / c["L_F"])


def campaign(seeds: int, epochs: int) -> tuple[dict, dict]:
  """results[(problem, batch, schedule, ordering)] = {'dist': (seeds, epochs+1), 'gap': ...}."""
  per_seed = [problems(s) for s in range(seeds)]
  results, info = {}, {}
  for j in range(len(per_seed[0])):
    ps = [row[j] for row in per_seed]
    w_star = [oc.optimum(p) for p in ps]
    consts = [oc.constants(p, w) for p, w in zip(ps, w_star)]
    label = f"{ps[0].name} {ps[0].loss.replace('_', ' ')}"
    n, d = ps[0].x.shape
    info[label] = {"n": n, "d": d, "l2": ps[0].l2,
                   **{k: float(np.mean([c[k] for c in consts])) for k in consts[0]}}
    x = jnp.asarray(np.stack([p.x for p in ps]))
    y = jnp.asarray(np.stack([p.y for p in ps]))
    w0 = jnp.asarray(np.stack([np.random.default_rng([s, 7]).normal(size=d) / np.sqrt(d)
                               for s in range(seeds)]))
    keys = jax.random.split(jax.random.key(0), seeds)
    ws = jnp.asarray(np.stack(w_star))
    lip = jnp.asarray([c["L_max"] for c in consts])
    f_star = np.array([oc.objective64(p, w) for p, w in zip(ps, w_star)])
    for batch in (1, BATCH):
      steps = oc.num_steps(n, batch)
      for schedule in oc.SCHEDULES:
        etas = jnp.asarray(np.stack([oc.step_sizes(schedule, eta0=eta0(c, batch), epochs=epochs,
                                                   steps_per_epoch=steps) for c in consts]))
        for ordering in oc.ORDERINGS:
          start = time.perf_counter()
          fn = jax.jit(jax.vmap(lambda *a, o=ordering, b=batch: oc.train(
              *a[:6], loss=ps[0].loss, l2=ps[0].l2, ordering=o, batch_size=b,
              smoothness=a[6])))
          traj = np.asarray(fn(x, y, w0, etas, keys, ws, lip), np.float64)
          dist = np.linalg.norm(traj - np.asarray(ws)[:, None], axis=2)
          gap = np.array([[oc.objective64(p, w) - fs for w in t]
                          for p, t, fs in zip(ps, traj, f_star)])
          results[(label, batch, schedule, ordering)] = {"dist": dist, "gap": gap}
          print(f"{label:34s} b={batch:2d} {schedule:10s} {ordering:10s} "
                f"dist@{epochs} {dist[:, -1].mean():.4g} ({time.perf_counter() - start:.1f}s)",
                flush=True)
  return results, info


def fmt(v: np.ndarray) -> str:
  return f"{v.mean():.3g} ± {v.std():.2g}"


def tables(results: dict, info: dict, epochs: int) -> str:
  cols = [e for e in REPORT_EPOCHS if e <= epochs]
  out = []
  for label, meta in info.items():
    out.append(f"### {label}\n\nn = {meta['n']}, d = {meta['d']}, l2 = {meta['l2']:g}, "
               f"L_max = {meta['L_max']:.3g}, L_F = {meta['L_F']:.3g}, mu* = "
               f"{meta['mu_star']:.3g}, kappa* = L_F/mu* ~ {meta['kappa_star']:.3g} (seed mean)\n")
    head = ("| batch | steps | ordering | " + " | ".join(f"‖w−w*‖ @{e}" for e in cols) + " | "
            + " | ".join(f"F−F* @{e}" for e in cols) + " |")
    out += [head, "|" + "---|" * (3 + 2 * len(cols))]
    for batch in (1, BATCH):
      for schedule in oc.SCHEDULES:
        best = min(oc.ORDERINGS,
                   key=lambda o: results[(label, batch, schedule, o)]["dist"][:, epochs].mean())
        for ordering in oc.ORDERINGS:
          r = results[(label, batch, schedule, ordering)]
          name = f"**{NAMES[ordering]}**" if ordering == best else NAMES[ordering]
          cells = [fmt(r["dist"][:, e]) for e in cols] + [fmt(r["gap"][:, e]) for e in cols]
          out.append(f"| {'1' if batch == 1 else batch} | {schedule} | {name} | "
                     + " | ".join(cells) + " |")
    out.append("")
  return "\n".join(out)


def winners(results: dict, info: dict, epochs: int) -> tuple[str, dict]:
  """Per setting: the best ordering at epochs 1 and `epochs`, and ascending vs descending."""
  rows = ["| problem | batch | steps | best @1 | best @" + str(epochs) + " | ascending vs "
          "descending @" + str(epochs) + " | GraB / RR @" + str(epochs) + " |",
          "|---|---|---|---|---|---|---|"]
  counts = {s: {"asc": 0, "desc": 0, "grab_best": 0, "sorted_beat_rr": 0, "total": 0,
                "bound_is_asc": 0} for s in oc.SCHEDULES}
  for label in info:
    for batch in (1, BATCH):
      for schedule in oc.SCHEDULES:
        mean = {o: results[(label, batch, schedule, o)]["dist"].mean(axis=0) for o in oc.ORDERINGS}
        b1 = min(mean, key=lambda o: mean[o][1])
        bl = min(mean, key=lambda o: mean[o][epochs])
        asc, desc = mean["ascending"][epochs], mean["descending"][epochs]
        c = counts[schedule]
        c["total"] += 1
        c["asc" if asc < desc else "desc"] += 1
        c["grab_best"] += bl == "grab"
        c["sorted_beat_rr"] += min(asc, desc) < mean["random"][epochs]
        c["bound_is_asc"] += bool(np.array_equal(mean["bound"], mean["ascending"]))
        rows.append(f"| {label} | {batch} | {schedule} | {NAMES[b1]} | {NAMES[bl]} | "
                    f"{'ascending' if asc < desc else 'descending'} ({asc:.3g} vs {desc:.3g}) | "
                    f"{mean['grab'][epochs] / mean['random'][epochs]:.2f} |")
  return "\n".join(rows), counts


def plot(results: dict, info: dict, batch: int, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = list(info)
  fig, axes = plt.subplots(2, len(labels), figsize=(4.2 * len(labels), 7), squeeze=False)
  for col, label in enumerate(labels):
    for row, schedule in enumerate(oc.SCHEDULES):
      ax = axes[row, col]
      for ordering in oc.ORDERINGS:
        dist = results[(label, batch, schedule, ordering)]["dist"]
        m, s = dist.mean(axis=0), dist.std(axis=0)
        t = np.arange(len(m))
        ax.plot(t, m, label=NAMES[ordering])
        ax.fill_between(t, np.maximum(m - s, 1e-12), m + s, alpha=0.2)
      ax.set_yscale("log")
      ax.set_title(f"{label}\n{schedule} steps", fontsize=9)
      ax.set_xlabel("epoch")
      if col == 0:
        ax.set_ylabel("‖w − w*‖ (mean ± std)")
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(f"Distance to the optimum, {'per-example' if batch == 1 else f'mini-batch {batch}'}"
               " SGD without replacement")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--out", default="docs/results")
  args = parser.parse_args()
  jax.config.update("jax_enable_x64", True)
  start = time.perf_counter()
  results, info = campaign(args.seeds, args.epochs)
  wall = time.perf_counter() - start
  os.makedirs(args.out, exist_ok=True)
  for batch, name in ((1, "ordering-per-example.png"), (BATCH, "ordering-minibatch.png")):
    plot(results, info, batch, os.path.join(args.out, name))
  win, counts = winners(results, info, args.epochs)
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
  doc = DOC.format(seeds=args.seeds, epochs=args.epochs, wall=wall, commit=commit,
                   cpu=platform.processor() or platform.machine(), ncpu=os.cpu_count(),
                   winners=win, tables=tables(results, info, args.epochs),
                   summary=summary(counts, args.epochs))
  with open(os.path.join(args.out, "ordering.md"), "w") as f:
    f.write(doc)
  print(f"wrote {args.out}/ordering.md and two plots in {wall:.0f} s")


def summary(counts: dict, epochs: int) -> str:
  lines = []
  for schedule, c in counts.items():
    lines.append(f"- {schedule} steps: ascending beats descending in {c['asc']} of {c['total']} "
                 f"settings (descending in {c['desc']}); the better sorted direction beats "
                 f"random reshuffling in {c['sorted_beat_rr']} of {c['total']}; GraB is the best "
                 f"ordering at epoch {epochs} in {c['grab_best']} of {c['total']}; the bound-selected "
                 f"trajectory is the ascending one in {c['bound_is_asc']} of {c['total']}.")
  return "\n".join(lines)


DOC = """# Example ordering for without-replacement SGD: convex problems

Spec §7 ("Ordering for Non-Replacement SGD", Xu & Mirzasoleiman, arXiv 2306.15848): an upper
bound on the distance to the optimum after one without-replacement epoch, depending on the
per-example gradients at the start of the epoch, yields orderings by gradient norm, one
direction for constant and the other for decreasing step sizes. This page measures those
orderings where the theory applies (smooth, strongly convex finite sums) against random
reshuffling, a fixed order and GraB (Lu et al., NeurIPS'22: greedy sign balancing of centred
stale gradients). Code: `robustdata/selection/ordering_convex.py`; tests:
`tests/selection/test_ordering_convex.py`.
The same orderings on a CNN (digits, constant and cosine learning rates):
docs/results/data-efficiency.md, "Proxy-norm ordering".

```bash
JAX_PLATFORMS=cpu python benchmarks/ordering_convex.py --seeds={seeds} --epochs={epochs}
```
{wall:.0f} s on a 2-core CPU VM ({cpu}, {ncpu} cores, shared). Commit: {commit}.

## Setup
- Problems: least squares and l2-regularised logistic regression on (a) synthetic data,
  n = 512, d = 20, feature second moment with eigenvalues exactly geometric in [1/100, 1]
  (a new draw per seed; least-squares noise 0.1), (b) the embedded digits train split (1,258
  examples; 61 non-constant pixels centred, rows scaled to unit norm, plus a bias; label digit
  >= 5). The optimum w* is float64 (normal equations; Newton to ||grad F|| <= 1e-13).
- SGD without replacement, float64, {epochs} epochs from w0 ~ N(0, I/d) (per seed). Per
  example: eta0 = 0.5 / L_max (L_max: the largest per-example smoothness). Mini-batch 16 (batch
  mean gradient, last batch smaller): eta0 = min(16 * 0.5 / L_max, 0.5 / L_F). Constant:
  eta_t = eta0; decreasing: eta_t = eta0 / (1 + t / T0), t the global step, T0 one epoch.
- Orderings, each epoch: random reshuffling; fixed (one random permutation reused); ascending /
  descending ||grad f_i(w)|| at the start of the epoch (mini-batch: sort, then cut consecutive
  batches); GraB (first epoch random; then balancing of the gradients seen in the previous epoch,
  centred by their stale mean); bound-selected: whichever sorted direction has the smaller
  bound below (an oracle, it reads w*).
- Seeds: {seeds}. Cells: mean ± std (population) over seeds; `F−F*` is the float64 suboptimality.

## The bound
For an epoch of K steps w_k = w_(k-1) − eta_k gbar_k(w_(k-1)) from w_0, every f_i L-smooth
(L = L_max) and gbar_k the mean gradient of batch k:

    ||w_K − w*|| <= ||w_0 − w* − sum_k eta_k gbar_k(w_0)|| + L sum_k eta_k D_(k-1),
    D_k = (1 + eta_k L) D_(k-1) + eta_k ||gbar_k(w_0)||,  D_0 = 0,

(D_k bounds ||w_k − w_0||, and gbar_k(w) − gbar_k(w_0) is at most L D). It depends on the order
only through the start-of-epoch gradients. The second term weighs ||gbar_k(w_0)|| by position
weights that fall with k for any non-increasing schedule, so it is smallest for ascending norms;
with constant steps the first term is order-free, so ascending norms minimise the bound. With
decreasing steps the first term prefers large steps on gradients aligned with w_0 − w*, and the
better direction can flip. On every one of the 5,040 orderings of 7-example problems the bound
holds, ascending is its exact minimiser under constant steps, and the selected direction is
within the best 1% under decreasing steps (tested). The paper's own text was not available
here; this derivation follows its abstract (a bound on the distance after one epoch from the
start-of-epoch gradients), so the bound and its prescribed directions are this project's.

## Which ordering wins
Best ordering by mean distance at epochs 1 and {epochs}; the sorted direction that wins at epoch
{epochs}; GraB's distance at epoch {epochs} over random reshuffling's (below 1: GraB closer).

{winners}

Counts over the 8 settings per schedule (4 problems x 2 batch modes):
{summary}

Reading (the counts above; numbers quoted from the {seeds}-seed run at the commit named):
- The bound-derived orderings do not beat random reshuffling. The bound picks ascending norms
  in practice (its rows equal the ascending rows), and neither sorted direction is closer to w*
  than random reshuffling at the last epoch except descending norms on synthetic least squares
  with decreasing steps (per example 0.817 ± 0.43 vs 0.876 ± 0.43 for random reshuffling), a
  gain far inside the seed spread. On digits, sorting by gradient norm nearly sorts by class and
  margin, gives long runs of correlated gradients, and stalls (distance 2.6-11.8 at the last
  epoch against 0.06-2.8 for random reshuffling and GraB).
- Direction: no schedule-dependent direction shows up. Descending beats ascending under both
  schedules on synthetic least squares (constant: 0.080 vs 0.128), ascending beats descending
  under both on digits logistic; with constant steps the bound's own prescription (ascending)
  loses to descending in half the settings.
- GraB, balancing consecutive centred gradients, is the best ordering at the last epoch in every
  constant-step setting (GraB / random reshuffling 0.21-0.87) and with decreasing steps on
  digits per example; with decreasing steps on the synthetic problems all non-sorted orders
  tie (ratio 1.00).
- So the paper's claim, as this bound reconstructs it, does not hold on these convex problems;
  the ordering effect that does hold is GraB's.

## Distance and suboptimality (bold: the best ordering at epoch {epochs})

{tables}
![per-example](ordering-per-example.png)

![mini-batch](ordering-minibatch.png)
"""


if __name__ == "__main__":
  main()
