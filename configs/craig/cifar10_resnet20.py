"""CRAIG on CIFAR-10 with ResNet-20 (Mirzasoleiman, Bilmes, Leskovec, ICML'20; spec §2). NOT RUN.

Reference train_resnet.py: SGD m0.9, wd 1e-4, lr 0.1, 200 epochs, x0.1 at 100/150, 20-epoch
warm-up (`-w`), batch 512 (README: random `-s 0.1 -w -b 512`, CRAIG `... -g --smtk 0`), a 10%
coreset of softmax - onehot proxies reselected every epoch (lag 1) with equal_num.
Paper: up to 3x speedup for deep nets at similar accuracy (per-experiment tables not verified).

Command:   python -m experiments.main --config=configs/craig/cifar10_resnet20.py \
             --config.data.data_dir=/path/to/tfds
Variants:  `smoke` (5 steps).
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  paper claim ~3x faster than full training at comparable accuracy; not measured here.
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/data-efficiency.md.
"""

from configs.crest import common
from robustdata import config_lib


def get_config(arg=None):
  common.parse(arg, ("smoke",), "craig/cifar10_resnet20")
  config = common.cifar("craig_cifar10_resnet20", dataset="cifar10", model="resnet20",
                        smoke=arg == "smoke")
  config.train.batch_size = 512
  config.policy.name = "craig"
  config.policy.fraction = 0.1
  config.policy.lag = 1
  config.policy.start_epoch = 0
  config.policy.kernel = "craig"
  config.policy.equal_num = True
  config.policy.method = "lazy_dense"   # 5k points per class, 10-d proxies
  return config_lib.finalize(config)
