"""`nn.GroupNorm` vs the models' GroupNorm (`robustdata.models.norm.group_norm`) on this machine.

Two tables, each from interleaved rounds (`interleave.time_interleaved`: median time per call,
each round in a fresh random order, each visit warmed by an untimed call):
1. per GroupNorm layer shape of the CLIP ConvTower (batch 128), the CNN and ResNet-20 with
   norm='group' (batch 64 and 256): the jitted loss + gradient (input, scale, bias), and the
   ratio flax/ours (>1: ours faster);
2. whole jitted steps built once with each GroupNorm (`nn.GroupNorm` is put in the models'
   modules while its steps are traced): the CLIP image tower's forward pass (SafeCLIP's and
   RoCLIP's scoring passes), the trainer's CLIP train step (`contrastive.steps.make_step`,
   kind 'clip', with its AdamW; the ConvTower and text sizes of configs/clip/shapes.py), and
   the ERM train steps of the CNN and ResNet-20 (`conv.erm_step`).

  JAX_PLATFORMS=cpu python benchmarks/group_norm.py [--quick] [--rounds 9] [--tables layers,steps]
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
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from conv import erm_step  # benchmarks/
from interleave import time_interleaved  # benchmarks/
from robustdata.contrastive import optim as contrastive_optim, steps as steps_lib
from robustdata.models import CNN, ResNet20
from robustdata.models import clip as clip_lib, norm as norm_lib
# pylint: enable=g-import-not-at-top,wrong-import-position

# (model, batch, [(height, width, channels, groups), ...]): every GroupNorm call of one pass.
LAYERS = [
    ("clip tower", 128, [(24, 24, 16, 8)] * 2 + [(12, 12, 32, 8)] * 2 + [(6, 6, 64, 8)] * 2),
    ("cnn", 64, [(32, 32, 32, 2), (16, 16, 64, 4)]),
    ("cnn", 256, [(32, 32, 32, 2), (16, 16, 64, 4)]),
    ("resnet20", 64, [(32, 32, 16, 1)] * 7 + [(16, 16, 32, 2)] * 7 + [(8, 8, 64, 4)] * 7),
    ("resnet20", 256, [(32, 32, 16, 1)] * 7 + [(16, 16, 32, 2)] * 7 + [(8, 8, 64, 4)] * 7),
]
IMPLS = {"flax": nn.GroupNorm, "ours": norm_lib.GroupNorm}


def _flax_group_norm(x, scale, bias, groups, eps):
  return nn.GroupNorm(num_groups=groups, epsilon=eps).apply(
      {"params": {"scale": scale, "bias": bias}}, x)


def layer_table(rounds: int, quick: bool) -> None:
  print(f"\n{'model':<11} {'batch':>5} {'layers':>6} {'flax ms':>8} {'ours ms':>8} "
        f"{'flax/ours':>9}")
  for model, batch, shapes in LAYERS:
    if quick and batch == 256:
      continue
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.normal(size=(batch, h, w, c)).astype(np.float32))
          for h, w, c, _ in shapes]
    ws = [jnp.asarray(rng.normal(size=x.shape).astype(np.float32)) for x in xs]
    ps = [(jnp.ones((c,), jnp.float32), jnp.zeros((c,), jnp.float32)) for _, _, c, _ in shapes]
    groups = [g for *_, g in shapes]
    fns = {}
    for name, fn in (("flax", _flax_group_norm), ("ours", norm_lib.group_norm)):
      def loss(xs, ps, fn=fn):
        return sum(jnp.sum(w * fn(x, s, b, g, 1e-5))
                   for x, w, (s, b), g in zip(xs, ws, ps, groups))
      grad = jax.jit(jax.grad(loss, (0, 1)))
      fns[name] = lambda grad=grad: grad(xs, ps)
    t = time_interleaved(fns, rounds=rounds, iters=3)
    print(f"{model:<11} {batch:>5} {len(shapes):>6} {t['flax'] * 1e3:>8.2f} "
          f"{t['ours'] * 1e3:>8.2f} {t['flax'] / t['ours']:>9.2f}", flush=True)


def _with_group_norm(impl, build: Callable[[], Callable]) -> Callable:
  """`build()` (which traces and compiles) with `impl` as the models' GroupNorm."""
  saved = norm_lib.GroupNorm, clip_lib.GroupNorm
  norm_lib.GroupNorm = clip_lib.GroupNorm = impl
  try:
    return build()
  finally:
    norm_lib.GroupNorm, clip_lib.GroupNorm = saved


def _clip_fns(batch_size: int = 128) -> dict[str, Callable[[], Callable]]:
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((batch_size, 24, 24, 3), dtype=np.float32))
  tokens = jnp.asarray(rng.integers(1, 100, (batch_size, 16)).astype(np.int32))
  model = clip_lib.CLIP(vocab_size=200, context_length=16, embed_dim=64, cnn_widths=(16, 32, 64),
                        text_width=64, text_depth=2, text_heads=2)

  def tower():
    params = model.init(jax.random.PRNGKey(0), images, tokens)
    fwd = jax.jit(lambda p: model.apply(p, images, method=model.encode_image)).lower(
        params).compile()
    return lambda: fwd(params)

  def step():
    tx = contrastive_optim.make_optimizer(learning_rate=2e-3)
    state = steps_lib.create_state(model, tx, rng=jax.random.PRNGKey(0), image_shape=(24, 24, 3),
                                   context_length=16, pools={})
    batch = {"x": images, "tokens": tokens, "mask": jnp.ones((batch_size,), jnp.float32)}
    lr = np.float32(2e-3)
    compiled = jax.jit(steps_lib.make_step(model, tx, kind="clip")).lower(
        state, batch, lr).compile()
    holder = {"state": state}

    def run():
      holder["state"], metrics = compiled(holder["state"], batch, lr)
      return metrics["loss"]
    return run
  return {"clip tower fwd 128": tower, "clip step 128": step}


def _erm_fn(model_fn: Callable[[], nn.Module], batch_size: int) -> Callable[[], Callable]:
  return lambda: erm_step(model_fn(), batch_size)


def step_table(rounds: int, quick: bool) -> None:
  builders = _clip_fns()
  for batch in ([64] if quick else [64, 256]):
    builders[f"cnn step {batch}"] = _erm_fn(lambda: CNN(10, norm="group"), batch)
    builders[f"resnet20 step {batch}"] = _erm_fn(lambda: ResNet20(10, norm="group"), batch)
  print(f"\n{'step':<20} {'flax ms':>8} {'ours ms':>8} {'flax/ours':>9}")
  for name, build in builders.items():
    fns = {impl: _with_group_norm(cls, build) for impl, cls in IMPLS.items()}
    t = time_interleaved(fns, rounds=rounds, iters=2)
    print(f"{name:<20} {t['flax'] * 1e3:>8.1f} {t['ours'] * 1e3:>8.1f} "
          f"{t['flax'] / t['ours']:>9.2f}", flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="batch 64 (and CLIP's 128), 3 rounds")
  parser.add_argument("--rounds", type=int, default=9)
  parser.add_argument("--tables", default="layers,steps")
  args = parser.parse_args()
  rounds = 3 if args.quick else args.rounds
  print(f"devices: {jax.devices()}")
  if "layers" in args.tables:
    layer_table(rounds, args.quick)
  if "steps" in args.tables:
    step_table(rounds, args.quick)


if __name__ == "__main__":
  main()
