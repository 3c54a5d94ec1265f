"""Is the input path the bottleneck? Compiled step on a cached device batch vs the full loop.

For MLP, CNN and ResNet-20 at batch 128 and 512 on 32x32x3 inputs: steps/s of the jitted train
step fed one cached device batch, and of the loop path (policy -> batch -> step) two ways: the
host path (host gather and padding -> device put) and the resident path the loader takes for a
small split (indices put -> jitted gather from a device copy of the split), with the ratios
loop/step (time per step). A third baseline feeds the step 8 cached device batches in turn:
the cost of a step on a batch that is not the one it just read (the input path's floor).
Target: within 1.15x at 512.

  python benchmarks/train_step.py [--quick] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if __name__ == "__main__":  # the allocator a run of experiments.main gets
  from experiments import restart_with_huge_pages  # pylint: disable=g-import-not-at-top
  restart_with_huge_pages()

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import ml_collections
import numpy as np

from interleave import time_interleaved  # benchmarks/
from robustdata import config_lib
from robustdata.data.dataset import Dataset
from robustdata.data.loader import BatchLoader
from robustdata.data.policies import FullData, PolicyContext
from robustdata.models import MLP, CNN, ResNet20
from robustdata.train import grad_rules, optim, sharding as sharding_lib, step as step_lib
from robustdata.train.objectives import ERM
from robustdata.train.state import create_train_state
# pylint: enable=g-import-not-at-top,wrong-import-position

MODELS = {"mlp": lambda: MLP(10), "cnn": lambda: CNN(10),
          "resnet20": lambda: ResNet20(10, norm="batch")}


def bench(name: str, batch_size: int, iters: int, rounds: int) -> tuple[float, ...]:
  """Median seconds per step of (cached, 8 cached, host loop, resident loop) over `rounds`
  interleaved rounds (`interleave.time_interleaved`: a fresh random order per round, each visit
  an untimed step, then `iters` timed ones)."""
  model = MODELS[name]()
  mesh = sharding_lib.make_mesh()
  cfg = config_lib.base_config()
  tx = optim.make_optimizer(cfg.optim)
  rng = np.random.default_rng(0)
  n = batch_size * 8
  data = Dataset(x=rng.random((n, 32, 32, 3), dtype=np.float32),
                 y=rng.integers(0, 10, n).astype(np.int32), ids=np.arange(n))
  repl, bsh = sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(32, 32, 3))
  state_sh = jax.tree.map(lambda _: repl, state)
  step = jax.jit(step_lib.make_train_step(step_lib.make_loss_fn(model), objective=ERM(None),
                                          grad_rule=grad_rules.plain_rule, tx=tx,
                                          augment=("crop", "flip")),
                 in_shardings=(state_sh, bsh, repl), out_shardings=(state_sh, repl),
                 donate_argnums=(0,))
  loaders = [BatchLoader(data, batch_size=batch_size, sharding=bsh, with_groups=False,
                         resident=resident) for resident in (False, True)]
  assert loaders[1].resident
  conf = ml_collections.ConfigDict({"policy": {"name": "full"}})
  policy = FullData(conf, data, batch_size=batch_size, seed=0, num_classes=10)
  ctx = PolicyContext(step=0, epoch=0, state=None, probe=None)
  cached = [loaders[0].device_batch(*policy.next_batch(ctx)) for _ in range(8)]
  holder = {"state": jax.device_put(state, repl), "epoch": 0, "i": 0}
  lr = np.float32(0.1)

  def cached_step(rotate: bool):
    holder["i"] += rotate
    holder["state"], m = step(holder["state"], cached[holder["i"] % len(cached)], lr)
    return m["loss"]

  def loop_step(loader):
    if policy.position >= policy.steps_for(ctx):
      holder["epoch"] += 1
      ctx.epoch = holder["epoch"]
      policy.steps_for(ctx)
    batch = loader.device_batch(*policy.next_batch(ctx))
    holder["state"], m = step(holder["state"], batch, lr)
    return m["loss"]

  fns = {"cached": lambda: cached_step(False), "8 cached": lambda: cached_step(True),
         "host": lambda: loop_step(loaders[0]), "resident": lambda: loop_step(loaders[1])}
  seconds = time_interleaved(fns, rounds=rounds, iters=iters)
  return tuple(seconds[name] for name in fns)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="fewer iterations")
  parser.add_argument("--models", default="mlp,cnn,resnet20")
  parser.add_argument("--batches", default="128,512")
  parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
  args = parser.parse_args()
  print(f"devices: {jax.devices()}")
  print(f"{'model':<10} {'batch':>5} {'step/s (cached)':>16} {'(8 cached)':>11} "
        f"{'(host)':>8} {'(resident)':>11} {'8 cached/step':>14} {'host/step':>10} "
        f"{'resident/step':>14}")
  for name in args.models.split(","):
    for b in (int(x) for x in args.batches.split(",")):
      iters = (3 if args.quick else 10) if name == "resnet20" else (10 if args.quick else 50)
      t_step, t_rotate, t_host, t_resident = bench(name, b, iters, args.rounds)
      print(f"{name:<10} {b:>5} {1 / t_step:>16.2f} {1 / t_rotate:>11.2f} {1 / t_host:>8.2f} "
            f"{1 / t_resident:>11.2f} {t_rotate / t_step:>14.3f} {t_host / t_step:>10.3f} "
            f"{t_resident / t_step:>14.3f}", flush=True)


if __name__ == "__main__":
  main()
