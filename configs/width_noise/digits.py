"""Width and density under label noise (the "final ascent", spec §8) on the embedded digits.

"Investigating the Impact of Model Width and Density on Generalization in Presence of Label
Noise" (Xue, Whitecross, Mirzasoleiman) on a CPU: scikit-learn's 8x8 digits (1,258 train
examples, or the `subset_size` fraction of them), a one-hidden-layer ReLU MLP of width k
(`model.width`), symmetric label noise drawn once from `data.split_seed`, plain SGD to
(near) interpolation, and test loss (the paper's primary metric) and accuracy of the final model.
Density: a global random unstructured mask over the kernels (`config.mask`, drawn at init from
the seed and fixed; density 1 = dense).

Variants (comma-separated tokens of the config arg):
  noise     n0, n20, n40 (default: n50), n50: symmetric noise rate 0, 0.2, 0.4 or 0.5.
  samples   s100 (default): the whole train split; s25: a random quarter (315 examples).
  smoke     3 epochs, for tests.

Command:   python -m experiments.main --config=configs/width_noise/digits.py:n50,s25 \
               --config.model.width=64 --config.mask.density=0.25
Sweep:     python -m experiments.sweep --config=configs/width_noise/digits.py --workdir=runs/wn \
               --jobs=2   (get_sweep: width x noise x sample size, density at noise 0.5)
Hardware:  2 shared CPU cores. Time: ~5-20 s per run (width 1-2048), the sweep ~25 minutes.
Expected:  at noise 0.5 and s25 the test loss is lowest at an intermediate width and rises for
           wide nets; a lower density lowers the wide nets' test loss. The table, the plots
           and which of the paper's findings hold here: docs/results/label-noise-width.md.
"""

import ml_collections

from robustdata import config_lib, validation

NOISE = {"n0": 0.0, "n20": 0.2, "n40": 0.4, "n50": 0.5}
SAMPLES = {"s100": 1.0, "s25": 0.25}
WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
DENSITIES = (0.05, 0.1, 0.25, 0.5, 1.0)
DENSITY_WIDTHS = (32, 256, 2048)
# (method, weight decay): ERM without and with l2, ELR (beta 0.7, lam 3) and mixup (alpha 1).
REGULARISED = (("erm", 0.0), ("erm", 5e-3), ("elr", 0.0), ("mixup", 0.0))
REG_WIDTHS = (1, 4, 16, 64, 256, 1024, 2048)
NAME = "width_noise_digits"


def get_config(arg=None):
  tokens = validation.parse_variants(arg, (*NOISE, *SAMPLES, "smoke"), "width_noise/digits",
                                     exclusive=(tuple(NOISE), tuple(SAMPLES)))
  noise = (tokens & set(NOISE) or {"n50"}).pop()
  samples = (tokens & set(SAMPLES) or {"s100"}).pop()
  config = config_lib.base_config()
  config.name = f"{NAME}_{samples}" + ("_smoke" if "smoke" in tokens else "")
  config.seed = 0
  config.method = "erm"

  config.data.name = "digits"
  config.data.augment = ()          # crops/flips change a digit's identity
  config.data.label_noise = NOISE[noise]  # round(r N) train labels flipped to another class
  config.data.label_noise_kind = "symmetric"
  config.data.subset_size = SAMPLES[samples]  # kept before the noise is drawn

  config.model.name = "mlp"
  config.model.hidden = (128,)      # one hidden layer; model.width = k makes it (k,)
  config.model.width = 128

  config.mask = ml_collections.ConfigDict(dict(config_lib.MASK_DEFAULTS))
  config.mask.kind = "random"       # global random unstructured, drawn at init from the seed
  config.mask.density = 1.0         # fraction of kernel weights kept; 1 = dense

  config.optim.name = "sgd"
  config.optim.learning_rate = 0.05
  config.optim.momentum = 0.9
  config.optim.weight_decay = 0.0   # no explicit l2: the setting where the ascent shows
  config.optim.schedule = "constant"

  config.train.epochs = 3 if "smoke" in tokens else 300
  config.train.batch_size = 64
  config.train.eval_batch_size = 512
  config.train.log_every_steps = 100
  config.train.checkpoint_every_steps = 5000
  config.train.eval_every_epochs = 1 if "smoke" in tokens else 100

  config.policy.name = "full"
  return config_lib.finalize(config)


def get_sweep():
  """The runs of docs/results/label-noise-width.md, in blocks named apart (so a report can glob
  one block): width x noise at both sample sizes (`<name>_s100`, `<name>_s25`); density x width
  at noise 0.5 (`<name>_density_*`); at noise 0.5 and s25, ERM with and without l2, ELR and
  mixup x width (`<name>_reg_s25`)."""
  points = []
  for samples, fraction in SAMPLES.items():
    base = {"data.subset_size": fraction}
    for rate in NOISE.values():
      for width in WIDTHS:
        points.append({"name": f"{NAME}_{samples}", **base, "data.label_noise": rate,
                       "model.width": width})
    for density in DENSITIES:
      for width in DENSITY_WIDTHS:
        points.append({"name": f"{NAME}_density_{samples}", **base, "data.label_noise": 0.5,
                       "model.width": width, "mask.density": density})
  small = {"name": f"{NAME}_reg_s25", "data.subset_size": SAMPLES["s25"],
           "data.label_noise": 0.5}
  for method, decay in REGULARISED:
    for width in REG_WIDTHS:
      points.append({**small, "method": method, "optim.weight_decay": decay,
                     "model.width": width})
  return points
