"""CREST on CIFAR-100 with ResNet-18 (Yang, Kang, Mirzasoleiman, ICML'23; spec §1). NOT RUN here.

Reference defaults: batch 128, 200 short epochs of T_e = ceil(5000/128) = 40 steps (10% of full
training), lr 0.1 with a 20-epoch linear warm-up and x0.1 at 100/150, wd 1e-4, momentum unused
in the reference (we keep 0 to match), random subsets of rho = 1% (5 per class), P0 = 5,
batch_num_mul 5, tau = 0.1, learned-example dropping as in the paper (5/20/0.1, pool >= 40k).
Paper: 1.7x-2.5x speedup over full training with minimal accuracy loss (per-dataset table not
verified; full-data ResNet-18 on CIFAR-100 reaches ~75-77%).

Command:   python -m experiments.main --config=configs/crest/cifar100_resnet18.py \
             --config.data.data_dir=/path/to/tfds
Variants:  `smoke` (5 steps: checks the data_dir and the pipeline).
Hardware:  one GPU (H100-class). Time: not measured.
Expected:  test_accuracy within ~1-2 points of full training (~0.75) at 10% of its steps
           (paper claim; not measured in this repo).
Results:   not measured at this scale; the embedded runs of the method are in
           docs/results/data-efficiency.md.
"""

from configs.crest import common


def get_config(arg=None):
  return common.crest_cifar("crest_cifar100_resnet18", dataset="cifar100", model="resnet18", arg=arg)
