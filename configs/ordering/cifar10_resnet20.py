"""Proxy-norm ordering on CIFAR-10 with ResNet-20 (spec §7). NOT RUN here.

The paper gives no code or training table; this applies the CIFAR protocol of the other configs
(batch 128, 200 epochs, step decay at 100/150, crop+flip) with ascending proxy-norm order.
Compare with random reshuffling (the `full` policy) at the same settings.

Command:   python -m experiments.main --config=configs/ordering/cifar10_resnet20.py \
             --config.data.data_dir=/path/to/tfds
Variants:  `smoke` (5 steps).
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  test_accuracy about that of random reshuffling (~0.91); not measured here.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/data-efficiency.md.
"""

from configs.crest import common
from robustdata import config_lib


def get_config(arg=None):
  common.parse(arg, ("smoke",), "ordering/cifar10_resnet20")
  config = common.cifar("ordering_cifar10_resnet20", dataset="cifar10", model="resnet20",
                        smoke=arg == "smoke")
  config.policy.name = "ordering"
  config.policy.ascending = True
  return config_lib.finalize(config)
