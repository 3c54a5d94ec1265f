"""Where a clean-label attack loses its effect: on the finished stages of a victim config
(substitute, crafted poisons), compares the poisons' gradient with the target's adversarial
gradient on the substitute and runs plain gradient descent from the substitute's weights on
the poisons alone and on the same images unperturbed, printing the target's probability of
the adversarial class step by step.

  python benchmarks/poisoning_diagnose.py --config=configs/friendly_noise/gm_shapes.py:trial0 \
      --workdir=runs/fn

If a few steps on the poisons alone flip the target while the victim trained from scratch on
the poisoned data is not attacked, the poisons are right for the substitute's final weights
and it is the victim's training (the poisons fitted among the clean data) that undoes them.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from robustdata import config_lib, validation
from robustdata.data import sources
from robustdata.poisoning import artifact as artifact_lib
from robustdata.poisoning import gradient_matching as gm
from robustdata.train.supervised import restore_model


def _norm(tree) -> float:
  return float(jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree.leaves(tree))))


def descend(logits_fn, variables, x, y, x_target, adversarial: int, *, lr: float, steps: int):
  """[(step, p_adv(target), predicted class)] along plain gradient descent on mean CE(x, y)."""
  grad = jax.jit(jax.grad(lambda p: gm.mean_cross_entropy(
      logits_fn, {**variables, "params": p}, x, y)))
  params, out = variables["params"], []
  for s in range(steps + 1):
    logits = logits_fn({**variables, "params": params}, x_target)[0]
    out.append((s, float(jax.nn.softmax(logits)[adversarial]), int(jnp.argmax(logits))))
    params = jax.tree.map(lambda a, g: a - lr * g, params, grad(params))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="a victim config file[:variants]")
  parser.add_argument("--workdir", required=True, help="where its stages ran")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--lr", type=float, nargs="+", default=[0.05, 0.5])
  parser.add_argument("--batch_size", type=int, default=64)
  args = parser.parse_args()
  victim = config_lib.resolve(validation.load_config_file(args.config))
  crafting = victim.poisons
  substitute = crafting.substitute
  data = sources.load(substitute.data)
  model, variables = restore_model(
      substitute, os.path.join(args.workdir, config_lib.run_id(substitute)), data)
  art = artifact_lib.PoisonArtifact.load(os.path.join(args.workdir, config_lib.run_id(crafting)))
  if not len(art.target_ids):
    raise SystemExit("a backdoor artifact has no single target; this diagnosis is for targeted "
                     "attacks")
  logits_fn, _ = gm.model_fns(model)
  x_target = data.test.x[np.asarray(art.target_ids)[:1]]
  adv = int(art.adversarial_class)
  clean = data.train.x[art.base_indices]
  labels = data.train.y[art.base_indices]
  poisoned = np.clip(clean + art.perturbations, 0.0, 1.0)
  g_target = gm.target_gradient(logits_fn, variables, x_target, np.array([adv]))
  g_poison = gm.param_gradient(logits_fn, variables, poisoned, labels)
  g_clean = gm.param_gradient(logits_fn, variables, clean, labels)
  print(f"target: test image {int(art.target_ids[0])} of class "
        f"{int(data.test.y[art.target_ids[0]])}; adversarial class {adv}; "
        f"{len(clean)} poisons, eps {art.eps:.4f}")
  print(f"1 - cos(target adversarial gradient, .): poisons {float(gm.cosine_distance(g_poison, g_target)):.3f}"
        f", unperturbed {float(gm.cosine_distance(g_clean, g_target)):.3f}")
  print(f"gradient norms: target {_norm(g_target):.3g}, poisons {_norm(g_poison):.3g}, "
        f"unperturbed {_norm(g_clean):.3g}")
  print("\n| lr | images | " + " | ".join(f"step {s}" for s in range(0, args.steps + 1, 5)) + " |")
  print("|---|---|" + "---|" * len(range(0, args.steps + 1, 5)))
  for lr in args.lr:
    for name, x in (("poisons", poisoned), ("unperturbed", clean)):
      trace = descend(logits_fn, variables, x, labels, x_target, adv, lr=lr, steps=args.steps)
      cells = [f"{p:.2g} ({c})" for s, p, c in trace if s % 5 == 0]
      print(f"| {lr} | {name} | " + " | ".join(cells) + " |")
  print("\ncells: the target's probability of the adversarial class (predicted class)")
  # The same descent on the whole poisoned train split in shuffled batches, as training sees it.
  x_all = artifact_lib.PoisonArtifact.apply(art, data.train.x)
  order = np.random.default_rng(0).permutation(len(x_all))
  batches = [order[s:s + args.batch_size] for s in range(0, len(order), args.batch_size)]
  grad = jax.jit(jax.grad(lambda p, x, y: gm.mean_cross_entropy(
      logits_fn, {**variables, "params": p}, x, y)))
  print(f"\none epoch on the poisoned train split (batch {args.batch_size}, lr {args.lr[0]}):")
  params, row = variables["params"], []
  for i, idx in enumerate(batches + [None]):
    if i % max(1, len(batches) // 8) == 0 or idx is None:
      logits = logits_fn({**variables, "params": params}, x_target)[0]
      row.append(f"step {i}: {float(jax.nn.softmax(logits)[adv]):.2g} ({int(jnp.argmax(logits))})")
    if idx is not None:
      g = grad(params, x_all[np.sort(idx)], data.train.y[np.sort(idx)])
      params = jax.tree.map(lambda a, b: a - args.lr[0] * b, params, g)
  print(", ".join(row))


if __name__ == "__main__":
  main()
