"""Width and density under label noise on CIFAR-10 with ResNet-32 (spec §8). NOT RUN here.

"Investigating the Impact of Model Width and Density on Generalization in Presence of Label
Noise" (Xue, Whitecross, Mirzasoleiman, arXiv 2208.08003), the protocol of the co-author's
code: ResNet-32 of base width k (`model.width`, stages k, 2k, 4k; k = 16 is the usual
ResNet-32), symmetric label noise at rate r drawn once, a random `subset_size` fraction of the
train split, density d as a global random unstructured mask over every conv/dense kernel drawn
at init and fixed (`config.mask`), SGD lr 0.1 momentum 0.9 wd 1e-4, batch 128, 120 epochs,
lr x0.1 at epochs 80 and 100, crop + flip. The metrics are the final model's test loss
(primary) and test accuracy.

Paper claims (not measured here): (i) with label noise large relative to the sample size the
test loss is lowest at an intermediate width and rises again for wide nets (the "final
ascent", after double descent); (ii) lowering the density (fewer trainable parameters at the
same width) improves generalisation under noise; (iii) stronger l2 and robust methods (ELR,
mixup) make the ascent worse; (iv) more samples mitigate it.

Variants (comma-separated tokens of the config arg):
  noise     n0, n20, n40 (default), n60: symmetric noise rate 0, 0.2, 0.4 or 0.6.
  samples   s100 (default), s50, s20: the fraction of the 50k train images kept.
  smoke     5 steps: checks the data_dir and the pipeline.

Command:   python -m experiments.main --config=configs/width_noise/cifar10.py:n40,s20 \
               --config.data.data_dir=/path/to/tfds --config.model.width=64
Sweep:     python -m experiments.sweep --config=configs/width_noise/cifar10.py \
               --workdir=runs/wn_cifar10   (set data.data_dir in get_config first: the sweep
               command takes no overrides)
Hardware:  one GPU (H100-class). Time: not measured (widths up to 128: ~0.1-30M parameters).
Expected:  the claims above; measured only on the embedded digits
           (configs/width_noise/digits.py, docs/results/label-noise-width.md).
"""

import ml_collections

from robustdata import config_lib, validation

NOISE = {"n0": 0.0, "n20": 0.2, "n40": 0.4, "n60": 0.6}
SAMPLES = {"s100": 1.0, "s50": 0.5, "s20": 0.2}
WIDTHS = (4, 8, 16, 32, 64, 128)
DENSITIES = (0.1, 0.25, 0.5, 1.0)
NAME = "width_noise_cifar10"


def get_config(arg=None):
  return build("cifar10", arg)


def build(dataset: str, arg=None):
  """The config of `dataset` (cifar10 or cifar100, the same protocol) for the tokens of `arg`."""
  tokens = validation.parse_variants(arg, (*NOISE, *SAMPLES, "smoke"), f"width_noise/{dataset}",
                                     exclusive=(tuple(NOISE), tuple(SAMPLES)))
  noise = (tokens & set(NOISE) or {"n40"}).pop()
  samples = (tokens & set(SAMPLES) or {"s100"}).pop()
  config = config_lib.base_config()
  config.name = f"width_noise_{dataset}_{samples}" + ("_smoke" if "smoke" in tokens else "")
  config.seed = 0
  config.method = "erm"

  config.data.name = dataset
  config.data.data_dir = ""         # required: a prepared local tfds data_dir (array_record)
  config.data.augment = ("crop", "flip")
  config.data.crop_padding = 4
  config.data.val_fraction = 0.0    # train on the (sub)set, report the test split
  config.data.label_noise = NOISE[noise]
  config.data.label_noise_kind = "symmetric"
  config.data.subset_size = SAMPLES[samples]

  config.model.name = "resnet32"
  config.model.norm = "batch"
  config.model.width = 16           # k: stages k, 2k, 4k

  config.mask = ml_collections.ConfigDict(dict(config_lib.MASK_DEFAULTS))
  config.mask.kind = "random"       # global random unstructured, drawn at init, fixed
  config.mask.density = 1.0

  config.optim.name = "sgd"
  config.optim.learning_rate = 0.1
  config.optim.momentum = 0.9
  config.optim.weight_decay = 1e-4
  config.optim.schedule = "step"
  config.optim.milestones = (80, 100)
  config.optim.gamma = 0.1

  config.train.epochs = 120
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000
  config.train.log_every_steps = 100
  config.train.checkpoint_every_steps = 2000
  config.train.eval_every_epochs = 10
  if "smoke" in tokens:
    config.train.epochs = 1
    config.train.max_steps = 5

  config.policy.name = "full"
  return config_lib.finalize(config)


def get_sweep():
  return sweep(NAME)


def sweep(name: str):
  """Width x noise at two sample sizes, then density x width at noise 0.4 and 20% samples."""
  points = []
  for samples in ("s100", "s20"):
    for rate in NOISE.values():
      for width in WIDTHS:
        points.append({"name": f"{name}_{samples}", "data.subset_size": SAMPLES[samples],
                       "data.label_noise": rate, "model.width": width})
  for density in DENSITIES:
    for width in (16, 64):
      points.append({"name": f"{name}_density_s20", "data.subset_size": SAMPLES["s20"],
                     "data.label_noise": 0.4, "model.width": width, "mask.density": density})
  return points
