"""Shared setups of the data-efficiency configs (crest/, craig/, augment_coresets/, ordering/);
not a config itself.

`digits(...)`: scikit-learn's 8x8 digits (1,258 train) with the small CNN; `task='hard'` is a
larger generated set: digits upsampled 2x (16x16) with 4 extra randomly shifted and noised
copies of every train image (6,290 train), and a wider 3-block CNN, so a full-data epoch costs
~5x more steps and ~20x more compute than on digits. Both tasks keep clean labels
(`config.data.label_noise` adds flipped ones; with 10% of them CREST's FL coresets chase the
mislabeled examples). `cifar(...)`: the papers' CIFAR settings through a local tfds data_dir
(not run here). Measured tables: docs/results/data-efficiency.md.
"""

import ml_collections

from robustdata import config_lib, validation

TASKS = ("digits", "hard")
BUDGET = 0.2          # step budget of the subset methods as a fraction of full-data steps


def digits(name: str, *, task: str = "digits", smoke: bool = False) -> ml_collections.ConfigDict:
  """An unlocked digits config (policy left as 'full'); callers set the policy fields."""
  if task not in TASKS:
    raise validation.ConfigError(f"unknown task {task!r}; allowed: {list(TASKS)}")
  config = config_lib.base_config()
  config.name = name if task == "digits" else f"{name}_hard"
  config.seed = 0
  config.method = "erm"
  config.data.name = "digits"
  config.data.augment = ()          # crops/flips change a digit's identity
  config.data.upsample = 1 if task == "digits" else 2
  if task == "hard":
    config.data.train_copies = 4
  config.model.name = "cnn"
  config.model.channels = (32, 64) if task == "digits" else (32, 64, 128)
  config.model.dense = 128 if task == "digits" else 256
  config.model.norm = "none"
  config.optim.name = "sgd"
  config.optim.learning_rate = 0.05
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.schedule = "cosine"
  config.train.epochs = 30
  config.train.batch_size = 50      # = 5 per class, so an equal_num coreset of b is exactly b
  config.train.eval_batch_size = 512
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 500
  config.train.eval_every_epochs = 10
  config.policy.name = "full"
  if smoke:
    config.name += "_smoke"
    config.train.epochs = 2
    config.train.eval_every_epochs = 1
  return config


def cifar(name: str, *, dataset: str, model: str, smoke: bool = False) -> ml_collections.ConfigDict:
  """An unlocked CIFAR config: crop(pad 4)+flip, batch 128, SGD lr 0.1, wd 1e-4, 200 epochs,
  20-epoch linear warm-up, LR x0.1 at epochs 100 and 150 after warm-up (CREST/CRAIG code)."""
  config = config_lib.base_config()
  config.name = name
  config.seed = 0
  config.method = "erm"
  config.data.name = dataset
  config.data.data_dir = ""        # required: a prepared local tfds data_dir (array_record)
  config.data.augment = ("crop", "flip")
  config.data.crop_padding = 4
  config.data.val_fraction = 0.0   # the papers train on all 50k and report the test split
  config.model.name = model
  config.model.norm = "batch"
  config.optim.name = "sgd"
  config.optim.learning_rate = 0.1
  config.optim.momentum = 0.9
  config.optim.weight_decay = 1e-4
  config.optim.schedule = "step"
  config.optim.warmup_epochs = 20.0
  config.optim.milestones = (100, 150)
  config.optim.gamma = 0.1
  config.train.epochs = 200
  config.train.batch_size = 128
  config.train.eval_batch_size = 1000
  config.train.log_every_steps = 100
  config.train.checkpoint_every_steps = 2000
  config.train.eval_every_epochs = 10
  config.policy.name = "full"
  if smoke:
    config.name += "_smoke"
    config.train.epochs = 1
    config.train.max_steps = 5
    config.optim.warmup_epochs = 0.0
  return config


def crest_cifar(name: str, *, dataset: str, model: str, arg=None) -> ml_collections.ConfigDict:
  """The locked CREST config of the reference on a CIFAR dataset (spec §1 defaults)."""
  validation.parse_variants(arg, ("smoke",), name)
  config = cifar(name, dataset=dataset, model=model, smoke=arg == "smoke")
  config.optim.momentum = 0.0       # the reference builds SGD without momentum
  config.policy.name = "crest"
  config.policy.train_frac = 0.1
  config.policy.random_subset_size = 0.01
  config.policy.num_minibatch_coreset = 5
  config.policy.batch_num_mul = 5
  config.policy.interval_mul = 1.0
  config.policy.check_thresh_factor = 0.1
  config.policy.start_epoch = 1
  config.policy.kernel = "exp"
  config.policy.drop_learned = True
  config.policy.watch_interval = 5
  config.policy.drop_interval = 20
  config.policy.drop_thresh = 0.1
  config.policy.min_train_size = 40000
  return config_lib.finalize(config)


def parse(arg, allowed: tuple[str, ...], what: str, *,
          exclusive: tuple[tuple[str, ...], ...] = ()) -> set[str]:
  """Comma-separated variant tokens of `arg` (None or '' -> none), each checked (a ConfigError
  names the allowed tokens); at most one token of each `exclusive` group."""
  return validation.parse_variants(arg, allowed, what, exclusive=exclusive)
