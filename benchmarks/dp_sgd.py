"""DP-SGD step speed: non-private vs vmap-clipped vs ghost-clipped, CNN and ResNet-20 (GroupNorm).

Prints samples/s, the DP/non-private ratios and the compiled peak memory per step, on 32x32x3
inputs at batch 64 and 256. The rules of one (model, batch) are compiled first, then timed in
interleaved rounds (each round visits every rule once, in a fresh random order, and times one
step after `--warm` untimed ones) and the median is reported, so machine load drifts and a
step's place in the round hit every rule alike. The models use the convolution a run's default
`config.train.conv='auto'` picks (printed). With `--opacus` the PyTorch steps of
third_party/opacus_bench.py (needs torch and opacus: plain non-private SGD, Opacus hooks and
ghost clipping) join the same interleaved rounds, and our samples/s over theirs is printed for
the non-private step (ours vs PyTorch's), vmap vs hooks and ghost vs ghost. Like
`experiments.main`, the script restarts itself with glibc's huge-page tunable where that helps
(`ROBUSTDATA_HUGE_PAGES=0`: not), so both frameworks run with the allocator a run gets.

  JAX_PLATFORMS=cpu python benchmarks/dp_sgd.py [--quick] [--rounds N] [--opacus] [--warm N]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if __name__ == "__main__":  # the allocator a run of experiments.main gets (both frameworks)
  from experiments import restart_with_huge_pages  # pylint: disable=g-import-not-at-top
  restart_with_huge_pages()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position

from robustdata.models import conv as conv_lib  # pylint: disable=g-import-not-at-top
from robustdata.models.cnn import CNN  # pylint: disable=g-import-not-at-top
from robustdata.models.resnet import ResNet20  # pylint: disable=g-import-not-at-top
from robustdata.privacy import rules  # pylint: disable=g-import-not-at-top
from interleave import time_interleaved  # pylint: disable=g-import-not-at-top  (benchmarks/)


def _loss_fn(model):
  def loss_fn(params, model_state, batch, rng, train=True):
    logits = model.apply({"params": params, **model_state}, batch["x"], train=train)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    return losses, (model_state, logits)
  return loss_fn


def _plain_rule(loss_fn, params, model_state, batch, rng, coef_fn):
  """The non-private reference: grad(sum(mask * coef * loss) / sum(mask))."""
  def objective(p):
    losses, (state, _) = loss_fn(p, model_state, batch, rng, train=True)
    coef = coef_fn(jax.lax.stop_gradient(losses), batch)
    return jnp.sum(batch["mask"] * coef * losses) / jnp.sum(batch["mask"]), state
  grads, state = jax.grad(objective, has_aux=True)(params)
  return grads, state, {}


def _compile(rule, loss_fn, params, batch):
  """(compiled step, its arguments, peak temp+output MiB) of one jitted SGD step with `rule`."""
  tx = optax.sgd(0.1)
  opt_state = tx.init(params)

  def step(params, opt_state, batch, key):
    grads, _, _ = rule(loss_fn, params, {}, batch, key, lambda l, b: b["weight"])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  args = (params, opt_state, batch, jax.random.PRNGKey(0))
  compiled = jax.jit(step).lower(*args).compile()
  mem = compiled.memory_analysis()
  peak = (mem.temp_size_in_bytes + mem.output_size_in_bytes) / 2**20 if mem else float("nan")
  jax.block_until_ready(compiled(*args))  # warm-up
  return compiled, args, peak


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true", help="fewer iterations")
  parser.add_argument("--rounds", type=int, default=None,
                      help="interleaved timing rounds (default 11, 3 with --quick)")
  parser.add_argument("--batches", default="64,256")
  parser.add_argument("--models", default="cnn,resnet20")
  parser.add_argument("--methods", default="vmap,ghost")
  parser.add_argument("--opacus", action="store_true", help="also run third_party Opacus")
  parser.add_argument("--warm", type=int, default=1,
                      help="untimed steps before each timed one (0: the old single-call rounds)")
  args = parser.parse_args()
  iters = args.rounds or (3 if args.quick else 11)
  opacus_bench = None
  if args.opacus:
    try:
      import third_party.opacus_bench as opacus_bench  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      print(f"opacus comparison skipped: {e}")
  models = {"cnn": lambda: CNN(num_classes=10, norm="group"),
            "resnet20": lambda: ResNet20(num_classes=10, norm="group")}
  conv = conv_lib.conv_function("auto")
  print(f"device: {jax.devices()[0].device_kind}, conv 'auto' = {conv.__name__}, "
        f"{iters} interleaved rounds, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores")
  if opacus_bench is not None:
    print(f"torch {opacus_bench.torch.__version__}, {opacus_bench.torch.get_num_threads()} "
          "threads")
  print(f"{'model':10s} {'batch':>5s} {'rule':>13s} {'samples/s':>10s} {'ratio':>6s} "
        f"{'peak MiB':>9s}")
  for name in args.models.split(","):
    model = models[name]()
    loss_fn = _loss_fn(model)
    for b in [int(v) for v in args.batches.split(",")]:
      rng = np.random.default_rng(0)
      batch = {"x": jnp.asarray(rng.normal(size=(b, 32, 32, 3)).astype(np.float32)),
               "y": jnp.asarray(rng.integers(0, 10, b).astype(np.int32)),
               "weight": jnp.ones(b), "mask": jnp.ones(b), "index": jnp.arange(b)}
      params = model.init(jax.random.PRNGKey(0), batch["x"][:1], train=True)["params"]
      rule_of = {"sgd": _plain_rule}
      for method in args.methods.split(","):
        rule_of[method] = rules.make_dp_rule(mode="dp_sgd", clip_norm=1.0, noise_multiplier=1.0,
                                             expected_batch_size=b, method=method)
      steps, peaks = {}, {}
      for rule_name, rule in rule_of.items():
        compiled, step_args, peaks[rule_name] = _compile(rule, loss_fn, params, batch)
        steps[rule_name] = functools.partial(compiled, *step_args)
      peers = {"torch-sgd": "sgd", "opacus-hooks": "hooks", "opacus-ghost": "ghost"}
      if opacus_bench is not None:  # timed in the same rounds as ours
        for peer, mode in peers.items():
          steps[peer] = opacus_bench.make_step(mode, name, b)
          peaks[peer] = float("nan")
      seconds = time_interleaved(steps, rounds=iters, warm=args.warm)
      for rule_name in steps:
        print(f"{name:10s} {b:5d} {rule_name:>13s} {b / seconds[rule_name]:10.1f} "
              f"{seconds[rule_name] / seconds['sgd']:6.2f} {peaks[rule_name]:9.1f}", flush=True)
      if opacus_bench is not None:
        for ours, theirs in zip(("sgd", "vmap", "ghost"), peers):
          if ours in seconds:
            print(f"{name:10s} {b:5d} ours-{ours}/{theirs} samples/s: "
                  f"{seconds[theirs] / seconds[ours]:.2f}x", flush=True)
  print("ratio = time per step / time of the non-private JAX step (sgd)")


if __name__ == "__main__":
  main()
