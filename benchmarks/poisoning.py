"""Cost of the poisoning kernels against a training step: gradient-matching crafting and Friendly
Noise generation, on the digits CNN (16x16x1 and 32x32x3) and ResNet-20 (32x32x3) at batch 128.

(a) One jitted gradient-matching iteration over a poison batch of 128 (second-order gradient
    through the parameter gradient, differentiable augmentation on or off, signed-Adam step)
    over one jitted training step (the supervised step with the plain 'sgd' rule, no
    augmentation) on the same model and batch size.
(b) Friendly Noise for one batch of 128 (30 iterations) over one training step, and its share of
    a whole defended run: generation once over N examples against E epochs of ceil(N/128)
    victim steps (the step with the defence's input transform, friendly + Bernoulli noise, and
    the setting's augmentation): N=1,258, E=20 for the 16x16 digits input, N=50,000, E=40 (the
    paper's CIFAR-10 setting) for 32x32x3 inputs.

Every function of one model is compiled, then timed in interleaved rounds
(`interleave.time_interleaved`: each round calls every function once untimed and once timed, in
a fresh random order) and the median is reported, so machine load drifts hit all alike.

  JAX_PLATFORMS=cpu python benchmarks/poisoning.py [--quick] [--models cnn16,cnn32,resnet20]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from interleave import time_interleaved  # pylint: disable=g-import-not-at-top  (benchmarks/)
from robustdata import config_lib  # pylint: disable=g-import-not-at-top
from robustdata.data import noise as noise_lib  # pylint: disable=g-import-not-at-top
from robustdata.models import CNN, ResNet18, ResNet20  # pylint: disable=g-import-not-at-top
from robustdata.poisoning import friendly_noise  # pylint: disable=g-import-not-at-top
from robustdata.poisoning import gradient_matching as gm  # pylint: disable=g-import-not-at-top
from robustdata.train import grad_rules, optim  # pylint: disable=g-import-not-at-top
from robustdata.train import step as step_lib  # pylint: disable=g-import-not-at-top
from robustdata.train.objectives import ERM  # pylint: disable=g-import-not-at-top
from robustdata.train.state import create_train_state  # pylint: disable=g-import-not-at-top

BATCH = 128
# name -> (model, input shape, victim augmentation, (N, E) of the training run of part (b))
DIGITS_RUN, CIFAR_RUN = (1258, 20), (50_000, 40)
SETTINGS = {
    "cnn16": (lambda: CNN(10, channels=(32, 64), dense=128, norm="none"), (16, 16, 1), (),
              DIGITS_RUN),
    "cnn32": (lambda: CNN(10, channels=(32, 64), dense=128, norm="none"), (32, 32, 3),
              ("crop", "flip"), CIFAR_RUN),
    "resnet20": (lambda: ResNet20(10, norm="batch"), (32, 32, 3), ("crop", "flip"), CIFAR_RUN),
    "resnet18": (lambda: ResNet18(10, norm="batch"), (32, 32, 3), ("crop", "flip"), CIFAR_RUN),
}


def _train_step(model, shape, *, augment, defence: bool) -> Callable[[], object]:
  """One jitted supervised step (plain rule, SGD of the base config) on a cached batch; with
  `defence`, the victim's input transform (friendly noise from the batch + Bernoulli noise)."""
  tx = optim.make_optimizer(config_lib.base_config().optim)
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=shape)
  rng = np.random.default_rng(0)
  batch = {"x": rng.random((BATCH, *shape), dtype=np.float32),
           "y": rng.integers(0, 10, BATCH).astype(np.int32),
           "weight": np.ones(BATCH, np.float32), "mask": np.ones(BATCH, np.float32),
           "index": np.arange(BATCH, dtype=np.int32)}
  transform = None
  if defence:
    batch["friendly"] = rng.uniform(-16 / 255, 16 / 255, (BATCH, *shape)).astype(np.float32)
    transform = lambda key, b: noise_lib.apply_defence_noise(b["x"], b["friendly"], key=key,
                                                             kind="bernoulli", eps=8 / 255)
  step = jax.jit(step_lib.make_train_step(step_lib.make_loss_fn(model), objective=ERM(None),
                                          grad_rule=grad_rules.plain_rule, tx=tx,
                                          augment=augment, input_transform=transform),
                 donate_argnums=(0,))
  batch = jax.device_put(batch)
  holder = {"state": state}
  lr = np.float32(0.1)

  def run():
    holder["state"], metrics = step(holder["state"], batch, lr)
    return metrics["loss"]

  return run


def _gm_iteration(model, variables, shape, *, augment: bool, scan: bool) -> Callable[[], object]:
  """One gradient-matching crafting iteration over a single poison batch of 128: the library's
  kernel (`scan`: `gm.craft`'s jitted iteration over the poison batches) or the same
  objective gradient and signed-Adam step jitted alone."""
  logits_fn, _ = gm.model_fns(model)
  rng = np.random.default_rng(1)
  x_t = rng.random((1, *shape), dtype=np.float32)
  g_t = gm.target_gradient(logits_fn, variables, x_t, np.zeros(1, np.int32))
  x = jnp.asarray(rng.random((1, BATCH, *shape), dtype=np.float32))
  y = jnp.ones((1, BATCH), jnp.int32)
  mask = jnp.ones((1, BATCH), jnp.float32)
  ids = jnp.arange(BATCH, dtype=jnp.int32)[None]
  eps = np.float32(16 / 255)
  delta = jnp.asarray(gm.init_delta(jax.random.PRNGKey(2), np.asarray(x), float(eps)))
  adam = gm.init_adam(delta)
  key, lr = jax.random.PRNGKey(3), np.float32(gm.reference_lr(BATCH))
  if scan:
    make = gm._make_iteration  # pylint: disable=protected-access
    iteration = make(logits_fn, augment=augment, max_shift=4.0)
  else:
    def objective(d, v, t, xb, yb, mb, ib, k):
      return gm.matching_loss(logits_fn, v, t, xb, d, yb, mask=mb, key=k, augment=augment,
                              example_ids=ib)

    value_and_grad = jax.value_and_grad(objective)

    @jax.jit
    def iteration(v, t, x, y, mask, ids, delta, adam, lr, eps, key):
      loss, grad = value_and_grad(delta[0], v, t, x[0], y[0], mask[0], ids[0], key)
      delta, adam = gm.craft_step(delta, adam, grad[None], x, lr=lr, eps=eps)
      return delta, adam, loss

  def run():
    return iteration(variables, g_t, x, y, mask, ids, delta, adam, lr, eps, key)[2]

  return run


def _friendly_batch(model, variables, shape) -> Callable[[], object]:
  """Friendly noise for one batch of 128 with the reference settings (30 iterations)."""
  logits_fn, _ = gm.model_fns(model)
  x = jnp.asarray(np.random.default_rng(4).random((BATCH, *shape), dtype=np.float32))
  key = jax.random.PRNGKey(5)

  def run():
    return friendly_noise.friendly_noise_batch(logits_fn, variables, x, key=key, iterations=30)[0]

  return run


def _friendly_iteration(model, variables, shape) -> Callable[[], object]:
  """The gradient of the Friendly Noise objective for one batch, jitted alone (outside the
  generation's lax.scan): what one of its 30 iterations costs without the loop."""
  logits_fn, _ = gm.model_fns(model)
  x = jnp.asarray(np.random.default_rng(4).random((BATCH, *shape), dtype=np.float32))
  reference = friendly_noise.reference_outputs(logits_fn(variables, x))
  grad = jax.jit(jax.grad(lambda e: friendly_noise.friendly_loss(logits_fn, variables, x, e,
                                                                 reference)[0]))
  noise = jnp.zeros_like(x)
  return lambda: grad(noise)


def bench(name: str, rounds: int, gm_augment: bool) -> dict[str, float]:
  """Median seconds of every timed function of one setting."""
  make_model, shape, augment, _ = SETTINGS[name]
  model = make_model()
  variables = dict(model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False))
  fns = {"step": _train_step(model, shape, augment=(), defence=False),
         "victim_step": _train_step(model, shape, augment=augment, defence=True),
         "friendly": _friendly_batch(model, variables, shape),
         "friendly_iteration": _friendly_iteration(model, variables, shape),
         "gm": _gm_iteration(model, variables, shape, augment=gm_augment, scan=True),
         "gm_no_scan": _gm_iteration(model, variables, shape, augment=gm_augment, scan=False)}
  t0 = time.perf_counter()
  seconds = time_interleaved(fns, rounds=rounds)
  seconds["wall"] = time.perf_counter() - t0
  return seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="3 rounds, the 16x16 digits CNN only (unless --models is given)")
  parser.add_argument("--models", default=None,
                      help=f"comma-separated from {list(SETTINGS)} (default: cnn16,cnn32,"
                           "resnet20; --quick: cnn16)")
  parser.add_argument("--rounds", type=int, default=None,
                      help="timed rounds (default: 3 with --quick or for ResNets, else 5)")
  parser.add_argument("--gm-augment", choices=("on", "off"), default="on",
                      help="gradient matching with the differentiable augmentation (reference: on)")
  args = parser.parse_args()
  names = (args.models or ("cnn16" if args.quick else "cnn16,cnn32,resnet20")).split(",")
  for n in names:
    if n not in SETTINGS:
      parser.error(f"--models: unknown model {n!r}; allowed: {list(SETTINGS)}")
  print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, batch {BATCH}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
  results = {}
  for n in names:
    rounds = args.rounds or (3 if args.quick or n.startswith("resnet") else 5)
    results[n] = bench(n, rounds, args.gm_augment == "on")
    print(f"  {n}: {rounds} interleaved rounds in {results[n]['wall']:.0f} s", flush=True)

  def shape_of(n):
    return "x".join(map(str, SETTINGS[n][1]))

  print(f"\n(a) gradient matching (augmentation {args.gm_augment}): one crafting iteration over "
        "a poison batch of 128 / one train step")
  print(f"{'model':9s} {'input':>8s} {'step ms':>8s} {'gm ms':>9s} {'gm/step':>7s} "
        f"{'no-scan ms':>10s} {'no-scan/step':>12s}")
  for n in names:
    s = results[n]
    print(f"{n:9s} {shape_of(n):>8s} {1e3 * s['step']:8.1f} {1e3 * s['gm']:9.1f} "
          f"{s['gm'] / s['step']:7.1f} {1e3 * s['gm_no_scan']:10.1f} "
          f"{s['gm_no_scan'] / s['step']:12.1f}")
  print("gm: the library's iteration (gradient_matching.craft's jitted iteration over the poison "
        "batches, here one); no-scan: the same objective gradient and signed-Adam step alone")

  print("\n(b) Friendly Noise: one batch of 128 (30 iterations) / one train step, and its share "
        "of a defended run\n    (generation once over N examples + E epochs of ceil(N/128) "
        "victim steps)")
  print(f"{'model':9s} {'input':>8s} {'FN ms':>8s} {'FN/step':>7s} {'30 x it ms':>10s} "
        f"{'victim ms':>9s} {'victim/step':>11s} {'N':>6s} {'E':>3s} {'FN s':>7s} "
        f"{'train s':>8s} {'FN share':>8s} {'30 x it share':>13s}")
  for n in names:
    s = results[n]
    num, epochs = SETTINGS[n][3]
    batches = math.ceil(num / BATCH)
    gen, train = batches * s["friendly"], epochs * batches * s["victim_step"]
    unrolled = 30 * batches * s["friendly_iteration"]
    print(f"{n:9s} {shape_of(n):>8s} {1e3 * s['friendly']:8.1f} "
          f"{s['friendly'] / s['step']:7.1f} {30e3 * s['friendly_iteration']:10.1f} "
          f"{1e3 * s['victim_step']:9.1f} {s['victim_step'] / s['step']:11.2f} {num:6d} "
          f"{epochs:3d} {gen:7.1f} {train:8.1f} {100 * gen / (gen + train):7.1f}% "
          f"{100 * unrolled / (unrolled + train):12.1f}%")
  print("step: supervised train step (plain rule, no augmentation); victim: the same step with "
        "friendly + Bernoulli(8/255) input noise\nand the setting's augmentation; FN: "
        "friendly_noise_batch (its 30 iterations in a lax.scan); 30 x it: 30 times one "
        "iteration's gradient\njitted alone; share = generation s / (generation s + train s)")


if __name__ == "__main__":
  main()
