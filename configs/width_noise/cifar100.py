"""Width and density under label noise on CIFAR-100 with ResNet-32 (spec §8). NOT RUN here.

The protocol of configs/width_noise/cifar10.py (the paper's CIFAR experiments cover both
datasets) with the 100-class split: ResNet-32 of base width k (`model.width`), symmetric label
noise at rate r drawn once, a `subset_size` fraction of the train split, a global random mask
of density d (`config.mask`), SGD lr 0.1 m0.9 wd 1e-4, batch 128, 120 epochs, lr x0.1 at 80 and
100, crop + flip; the final model's test loss and accuracy. Variant tokens and sweep: as
cifar10.py (noise n0 / n20 / n40 / n60, samples s100 / s50 / s20, smoke).

Paper claims (not measured here): the final ascent in test loss over width appears with enough
label noise relative to the sample size, lower density helps under noise, stronger l2 and
robust methods make the ascent worse, more samples mitigate it.

Command:   python -m experiments.main --config=configs/width_noise/cifar100.py:n40,s20 \
               --config.data.data_dir=/path/to/tfds --config.model.width=64
Sweep:     python -m experiments.sweep --config=configs/width_noise/cifar100.py \
               --workdir=runs/wn_cifar100   (set data.data_dir in get_config first)
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  the claims above; measured only on the embedded digits
           (configs/width_noise/digits.py, docs/results/label-noise-width.md).
"""

from configs.width_noise import cifar10

NAME = "width_noise_cifar100"


def get_config(arg=None):
  return cifar10.build("cifar100", arg)


def get_sweep():
  return cifar10.sweep(NAME)
