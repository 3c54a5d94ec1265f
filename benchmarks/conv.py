"""XLA's convolution vs the CPU convolution (`robustdata.models.conv`) on this machine.

Two tables, each from interleaved rounds (`interleave.time_interleaved`: median time per call,
each round in a fresh random order, each visit warmed by an untimed call):
1. per conv layer of the CNN and ResNet-20 (and the CLIP ViT's patch embedding) on 32x32x3
   inputs, at batch 64 and 256: the jitted loss + gradient (input and weight; weight only for
   a first layer) with XLA's VJP and with the slice VJP, the ratio xla/slices (>1: slices
   faster);
2. the whole jitted train step (ERM, SGD) of the CNN and ResNet-20 with `config.train.conv`
   'xla' and 'cpu' (the slice VJP on every layer), the ratio xla/cpu.
It also prints which implementation 'auto' picks on this backend. With several devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`) the train steps shard the batch over all
of them and print how many all-gathers a compiled step holds.

  JAX_PLATFORMS=cpu python benchmarks/conv.py [--quick] [--rounds 7] [--tables layers,models]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if __name__ == "__main__":  # the allocator a run of experiments.main gets
  from experiments import restart_with_huge_pages  # pylint: disable=g-import-not-at-top
  restart_with_huge_pages()

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from interleave import time_interleaved  # benchmarks/
from robustdata import config_lib
from robustdata.models import CNN, ResNet20
from robustdata.models import conv as conv_lib
from robustdata.train import grad_rules, optim, sharding as sharding_lib, step as step_lib
from robustdata.train.objectives import ERM
from robustdata.train.state import create_train_state
# pylint: enable=g-import-not-at-top,wrong-import-position

DIMS = ("NHWC", "HWIO", "NHWC")
# (model, layer, input size, C_in, C_out, kernel, stride, padding, needs the input gradient)
LAYERS = [
    ("cnn", "conv0", 32, 3, 32, 3, 1, "SAME", False),
    ("cnn", "conv1", 16, 32, 64, 3, 1, "SAME", True),
    ("resnet20", "stem", 32, 3, 16, 3, 1, ((1, 1), (1, 1)), False),
    ("resnet20", "stage0 3x3", 32, 16, 16, 3, 1, ((1, 1), (1, 1)), True),
    ("resnet20", "stage1 conv1 s2", 32, 16, 32, 3, 2, ((1, 1), (1, 1)), True),
    ("resnet20", "stage1 proj 1x1 s2", 32, 16, 32, 1, 2, "SAME", True),
    ("resnet20", "stage1 3x3", 16, 32, 32, 3, 1, ((1, 1), (1, 1)), True),
    ("resnet20", "stage2 conv1 s2", 16, 32, 64, 3, 2, ((1, 1), (1, 1)), True),
    ("resnet20", "stage2 proj 1x1 s2", 16, 32, 64, 1, 2, "SAME", True),
    ("resnet20", "stage2 3x3", 8, 64, 64, 3, 1, ((1, 1), (1, 1)), True),
    ("clip_vit", "patch_embed p4", 32, 3, 128, 4, 4, "VALID", False),
]
MODELS = {"cnn": lambda conv: CNN(10, norm="none", conv=conv),
          "resnet20": lambda conv: ResNet20(10, norm="batch").clone(conv=conv)}


def layer_table(batches: list[int], rounds: int, match: str = "") -> None:
  print(f"\n{'model':<9} {'layer':<19} {'batch':>5} {'xla ms':>8} {'slices ms':>9} "
        f"{'xla/slices':>10}")
  for batch in batches:
    for model, layer, size, cin, cout, k, stride, padding, need_dx in LAYERS:
      if match not in f"{model} {layer}":
        continue
      rng = np.random.default_rng(0)
      x = jnp.asarray(rng.normal(size=(batch, size, size, cin)).astype(np.float32))
      w = jnp.asarray(0.1 * rng.normal(size=(k, k, cin, cout)).astype(np.float32))
      fns = {}
      for name, conv in (("xla", lax.conv_general_dilated),
                         ("slices", conv_lib.slice_conv_general_dilated)):
        def loss(x, w, conv=conv):
          y = conv(x, w, (stride, stride), padding, dimension_numbers=DIMS)
          return 0.5 * jnp.sum(jnp.square(y))
        grad = jax.jit(jax.grad(loss, (0, 1) if need_dx else (1,)))
        fns[name] = lambda grad=grad: grad(x, w)
      t = time_interleaved(fns, rounds=rounds, iters=3)
      print(f"{model:<9} {layer:<19} {batch:>5} {t['xla'] * 1e3:>8.2f} {t['slices'] * 1e3:>9.2f} "
            f"{t['xla'] / t['slices']:>10.2f}", flush=True)


def _step_fn(model_name: str, conv: str, batch_size: int) -> Callable:
  """The model's compiled train step with convolution `conv` (`erm_step`)."""
  return erm_step(MODELS[model_name](conv), batch_size,
                  label=f"{model_name}, conv={conv!r}, batch {batch_size}")


def erm_step(model, batch_size: int, label: str = "") -> Callable:
  """A compiled ERM + SGD train step of `model` on one fixed batch of 32x32x3 images, as a
  no-argument callable. With several devices the batch is sharded over all of them (the state
  replicated) and the count of all-gathers in the compiled step is printed."""
  tx = optim.make_optimizer(config_lib.base_config().optim)
  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.random((batch_size, 32, 32, 3), dtype=np.float32)),
           "y": jnp.asarray(rng.integers(0, 10, batch_size).astype(np.int32)),
           "weight": jnp.ones((batch_size,), jnp.float32),
           "mask": jnp.ones((batch_size,), jnp.float32),
           "index": jnp.arange(batch_size)}
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(32, 32, 3))
  if jax.device_count() > 1:  # the batch sharded over every device, the state replicated
    mesh = sharding_lib.make_mesh()
    batch = jax.device_put(batch, sharding_lib.batch_sharding(mesh))
    state = jax.device_put(state, sharding_lib.replicated(mesh))
  step = jax.jit(step_lib.make_train_step(step_lib.make_loss_fn(model), objective=ERM(None),
                                          grad_rule=grad_rules.plain_rule, tx=tx))
  lr = np.float32(0.01)
  compiled = step.lower(state, batch, lr).compile()
  gathers = compiled.as_text().count("all-gather(")
  if gathers:
    print(f"  ({label or type(model).__name__}: {gathers} all-gathers)")
  holder = {"state": state}

  def run():
    holder["state"], metrics = compiled(holder["state"], batch, lr)
    return metrics["loss"]
  return run


def model_table(batches: list[int], rounds: int) -> None:
  print(f"\n{'model':<9} {'batch':>5} {'xla ms':>8} {'cpu ms':>8} {'xla/cpu':>8}")
  for model_name in MODELS:
    for batch in batches:
      fns = {"xla": _step_fn(model_name, "xla", batch), "cpu": _step_fn(model_name, "cpu", batch)}
      t = time_interleaved(fns, rounds=rounds, iters=2)
      print(f"{model_name:<9} {batch:>5} {t['xla'] * 1e3:>8.1f} {t['cpu'] * 1e3:>8.1f} "
            f"{t['xla'] / t['cpu']:>8.2f}", flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="batch 64 only, 3 rounds")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--tables", default="layers,models")
  parser.add_argument("--match", default="", help="only layers whose 'model layer' has this")
  args = parser.parse_args()
  batches = [64] if args.quick else [64, 256]
  rounds = 3 if args.quick else args.rounds
  auto = conv_lib.conv_function("auto")
  print(f"devices: {jax.devices()}; backend {jax.default_backend()!r}: config.train.conv='auto' "
        f"picks {'cpu' if auto is conv_lib.cpu_conv_general_dilated else 'xla'}")
  if "layers" in args.tables:
    layer_table(batches, rounds, args.match)
  if "models" in args.tables:
    model_table(batches, rounds)


if __name__ == "__main__":
  main()
