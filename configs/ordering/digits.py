"""Ordering for non-replacement SGD (Xu & Mirzasoleiman, arXiv 2306.15848; spec §7) on digits:
each epoch is ordered by start-of-epoch gradient-proxy norms ||softmax - onehot||, against the
orderings of the convex study (docs/results/ordering.md).

Variants (comma-separated): (none) random mini-batches ordered by ascending block-gradient
norm ||mean_B g_i||; `descending`; `examples` (sort the examples themselves by ||g_i|| and cut
consecutive batches, the literal per-example ordering); `random` (random reshuffling, the
baseline); `fixed` (one random permutation reused every epoch); `grab` (GraB, Lu et al.
NeurIPS'22: greedy sign balancing of the previous epoch's centred in-training proxies, cut
into consecutive batches); `linear` (with `grab` or a sorted ordering: the last linear layer's
per-example weight gradient, proxy (x) features, instead of softmax - onehot); `decreasing` (with
any of them: a cosine learning rate instead of the constant one, the paper's bound differing by
step-size regime); `smoke`.

Command:   python -m experiments.main --config=configs/ordering/digits.py[:grab,decreasing]
Hardware:  2 CPU cores. Time: ~6-10 s a run (GraB probes every batch: ~25% more).
Expected:  seeds 0-4, constant lr: test_accuracy 0.993 random reshuffling, 0.992 (default),
           0.993 (descending), 0.986 (fixed), 0.985 (grab), 0.992 (grab,linear); final train
           loss 1.7e-3 random reshuffling, 1.4e-3 grab,linear; per-example sorting fails near
           chance, ~0.09 (consecutive batches of similar-norm examples are nearly single-class).
           With `decreasing` every ordering that does not sort examples gives 0.993-0.995.
Results:   docs/results/data-efficiency.md (proxy-norm ordering)
"""

from configs.crest import common
from robustdata import config_lib, validation

ORDERS = ("random", "fixed", "grab")  # orderings that take no sorting options


def get_config(arg=None):
  tokens = common.parse(arg, ("descending", "examples", "random", "fixed", "grab", "linear",
                              "decreasing", "smoke"), "ordering/digits", exclusive=(ORDERS,))
  order = next((t for t in ORDERS if t in tokens), None)
  if order and tokens & {"descending", "examples"}:
    raise validation.ConfigError(f"the variant {arg!r} of ordering/digits: {order!r} takes no "
                                 f"sorting options; got {sorted(tokens)}")
  if order in ("random", "fixed") and "linear" in tokens:
    raise validation.ConfigError(f"the variant {arg!r} of ordering/digits: {order!r} uses no "
                                 f"gradient proxies, so 'linear' does not apply")
  direction = "descending" if "descending" in tokens else "ascending"
  blocks = "examples" if "examples" in tokens else "batches"
  variant = order or (f"{direction}_examples" if blocks == "examples" else direction)
  if "linear" in tokens:
    variant += "_linear"
  if "decreasing" in tokens:
    variant += "_decreasing"
  config = common.digits(f"ordering_{variant}_digits", smoke="smoke" in tokens)
  config.optim.schedule = "cosine" if "decreasing" in tokens else "constant"
  config.train.epochs = 15 if "smoke" not in tokens else 2
  if order == "random":
    config.policy.name = "full"
  elif order == "fixed":
    config.policy.name = "fixed_order"
  elif order == "grab":
    config.policy.name = "grab"
  else:
    config.policy.name = "ordering"
    config.policy.ascending = direction == "ascending"
    config.policy.blocks = blocks
  if "linear" in tokens:
    config.policy.use_linear = True
  return config_lib.finalize(config)
