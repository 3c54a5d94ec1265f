"""Builders of the Friendly Noise experiments in the paper's CIFAR-10 / ResNet-18 setting; the
same three stages as `common.py`, each a run of its own:

  substitute (trainer supervised)  ->  poisons (trainer poison_craft)  ->  victim (poison_victim)

CIFAR-10 comes from a prepared local tfds data_dir (robustdata never downloads). The three stages
share one `data_dir` field reference, so `--config.data.data_dir=/path/to/tfds` sets it for all
of them (each stage's hash still holds the value).

Variant tokens (comma-separated): those of `common.py` without `dp` (ResNet-18 has BatchNorm,
which per-example clipping does not allow), plus `eps8`: the benchmark's l_inf bound 8/255
instead of 16/255. `ensemble3` (Bullseye Polytope only) crafts against three ResNet-18
substitutes (seeds 100-102).

`smoke` runs the three stages for a few steps each on 2% of the train split with the small CNN
(width 8, BatchNorm, lr 0.01) in place of ResNet-18, whose compiles alone take minutes on a
CPU: it checks the data_dir, each stage's code on CIFAR-10's shapes (BatchNorm included) and
the chaining in under a minute, not ResNet-18 or the attack.

Checked: each config's `smoke,friendly_random` variant runs its three stages end to end on a
CIFAR-10-shaped tfds data_dir generated for the purpose (50,000 train and 10,000 test images
of noise, `tests/fake_tfds.py`) in 40-59 s on one CPU core from an empty workdir without the
compilation cache (`--compilation_cache=none`; Sleeper Agent slowest). The paper-setting chains
(ResNet-18) have run end to end at the smoke's step counts on a smaller generated set (600 + 200
images), nearly all of their time on a CPU compiling (minutes per stage).
tests/poisoning/test_cifar10_configs.py validates every chain, in both settings, on such a
directory.

Targets: the data is not read when a config is built, so the target of `trial<k>` is the k-th
entry of TARGETS (test-split indices of the prepared tfds split, chosen, not the benchmark's).
A target whose label is the adversarial class is rejected by the crafting stage with an error
naming config.attack.target_index; pass another with --config.poisons.attack.target_index.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from ml_collections import config_dict

from configs.friendly_noise import common
from robustdata import config_lib

DATASET = "cifar10"
EPOCHS = 40
TRANSFER_EPOCHS = 40  # the benchmark's transfer recipe: 40 epochs, lr 0.01, x0.1 at 30
DEFENCES = ("none", "random", "friendly", "friendly_random")
TOKENS = ("smoke", "eps8", *DEFENCES, *(f"trial{k}" for k in range(common.TRIALS)),
          *(f"seed{s}" for s in range(common.SEEDS)), common.ENSEMBLE)
TARGETS = tuple(int(i) for i in np.random.default_rng(1234).permutation(10_000)[:common.TRIALS])
# The reference optimises the perturbation in normalised units (x - mean) / std, so its signed
# Adam step 0.1 (pbatch 512) is 0.1 * std in pixels; CIFAR-10's std is (0.247, 0.243, 0.261),
# one scalar (their mean) is used for the three channels.
CIFAR10_STD = 0.2507
REFERENCE_SIGN_LR = 0.1 * CIFAR10_STD


def milestones(epochs: int) -> tuple[int, ...]:
  """The reference's LR drops, [E // 2.667, E // 1.6, E // 1.142] in float floor division:
  (14, 24, 35) for E = 40 (40 / 1.6 is 25 but 40 // 1.6 is 24.0 in floating point)."""
  return tuple(int(epochs // d) for d in (2.667, 1.6, 1.142))


def cifar10_data(c: ml_collections.ConfigDict, data_dir: config_dict.FieldReference) -> None:
  """CIFAR-10 (all 50,000 train images, the test split for evaluation), ResNet-18 (CIFAR stem,
  BatchNorm), SGD lr 0.1 Nesterov momentum 0.9, wd 5e-4, batch 128, LR x0.1 at `milestones`.
  The reference's differentiable random translation (+-4 px) and flip is approximated by the
  integer crop (zero padding 4) and flip; its weight decay skips biases and BatchNorm, ours
  decays every parameter."""
  c.data.name = DATASET
  c.data.data_dir = data_dir      # required: a prepared local tfds data_dir (array_record)
  c.data.val_fraction = 0.0       # train on all 50k, report the test split
  c.data.split_seed = 0
  c.data.augment = ("crop", "flip")
  c.data.crop_padding = 4
  c.model.name = "resnet18"
  c.model.norm = "batch"
  c.model.width = 64
  c.optim.name = "sgd"
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "step"
  c.optim.milestones = milestones(EPOCHS)
  c.optim.gamma = 0.1
  c.train.batch_size = 128
  c.train.eval_batch_size = 1000
  c.train.log_every_steps = 100
  c.train.checkpoint_every_steps = 2000
  c.train.eval_every_epochs = 10  # the reference evaluates every 10 epochs and at the end


SMOKE_SUBSET = 0.02  # of the train split: 1,000 of CIFAR-10's 50,000 images (10 poisons at 1%)


def _smoke_scale(c: ml_collections.ConfigDict) -> None:
  """The smoke's data and model: SMOKE_SUBSET of the train split (drawn by split_seed, the same
  rows in every stage) and the small CNN (width 8, BatchNorm, lr 0.01) in place of ResNet-18,
  whose compiles alone take minutes on a CPU."""
  c.data.subset_size = SMOKE_SUBSET
  c.model = ml_collections.ConfigDict({"name": "cnn", "norm": "batch", "width": 8})
  c.optim.learning_rate = 0.01  # at ResNet-18's 0.1 the CNN diverged within five steps
  c.train.eval_batch_size = 2000


def _smoke(c: ml_collections.ConfigDict) -> None:
  """A few steps of one epoch on the smoke's data and model (`_smoke_scale`)."""
  _smoke_scale(c)
  c.train.epochs = 1
  c.train.max_steps = 5
  c.train.eval_every_epochs = 1


def substitute_config(data_dir: config_dict.FieldReference, *, smoke: bool,
                      seed: int = common.SUBSTITUTE_SEED) -> ml_collections.ConfigDict:
  """The clean ResNet-18 the poisons are crafted against (40 epochs, its own seed)."""
  c = config_lib.base_config()
  c.name = f"fn_substitute_{DATASET}" + ("_smoke" if smoke else "")
  c.seed = seed
  cifar10_data(c, data_dir)
  c.train.epochs = EPOCHS
  if smoke:
    _smoke(c)
  return c


def poisons_config(attack: dict, data_dir: config_dict.FieldReference, *, trial: int,
                   smoke: bool, substitutes: int = 1) -> ml_collections.ConfigDict:
  """The crafting stage: `attack` overrides craft.ATTACK_DEFAULTS; the target is TARGETS[trial]
  (Sleeper Agent has none: its trigger moves the source class); `substitutes` as in
  common.poisons_config."""
  c = config_lib.base_config()
  c.trainer = "poison_craft"
  c.name = (f"fn_craft_{attack['name']}_{DATASET}" + common.ensemble_tag(substitutes)
            + ("_smoke" if smoke else ""))
  c.seed = 0
  cifar10_data(c, data_dir)
  c.train.epochs = 1  # crafting counts restarts (config.attack.restarts)
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 1
  c.attack = common.attack_section(attack, trial)
  c.attack.target_index = None if attack["name"] == "sleeper_agent" else TARGETS[trial]
  if smoke:
    _smoke_scale(c)
    c.attack.iterations = 3
    c.attack.restarts = 1
    c.attack.retrain_every = min(c.attack.retrain_every, 1)  # one retraining, at iteration 1
  c.substitute = substitute_config(data_dir, smoke=smoke)
  common.add_ensemble(c, substitutes,
                      lambda seed: substitute_config(data_dir, smoke=smoke, seed=seed))
  return c


def victim_config(attack: dict, arg, *, what: str, transfer: bool = False
                  ) -> ml_collections.ConfigDict:
  """The victim run of `attack` on CIFAR-10 for the variant tokens of `arg`: ResNet-18 from
  scratch, or (`transfer`) the benchmark's transfer setting: the substitute's layers frozen
  and a new last layer trained on the poisoned data (TRANSFER_EPOCHS epochs, lr 0.01, x0.1
  at epoch 30)."""
  tokens, defence, trial, seed = common.parse_tokens(arg, what, defences=DEFENCES,
                                                      tokens=TOKENS)
  smoke = "smoke" in tokens
  if "eps8" in tokens:
    attack = {**attack, "eps": 8 / 255}
  data_dir = config_dict.FieldReference("", field_type=str)
  c = config_lib.base_config()
  c.trainer = "poison_victim"
  c.name = (f"fn_{attack['name']}_{DATASET}_{defence}_t{trial}_s{seed}"
            + ("_eps8" if "eps8" in tokens else "")
            + common.ensemble_tag(common.substitutes_of(tokens)) + ("_smoke" if smoke else ""))
  c.seed = seed
  cifar10_data(c, data_dir)
  c.train.epochs = EPOCHS
  # The README's command (--friendly_begin_epoch 5); the random noise's 8/255 is the code's value
  # (the paper's text mentions 16/255).
  c.friendly = common.friendly_section(defence, begin_epoch=5)
  if transfer:
    c.victim = ml_collections.ConfigDict({"init": "substitute", "trainable": "last_layer"})
    c.train.epochs = TRANSFER_EPOCHS
    c.optim.learning_rate = 0.01
    c.optim.milestones = (30,)
  if smoke:
    _smoke(c)
    c.friendly.begin_epoch = 0    # generated before the first step, so the smoke covers it
    c.friendly.iterations = 2
  c.poisons = poisons_config(attack, data_dir, trial=trial, smoke=smoke,
                             substitutes=common.substitutes_of(tokens))
  # One deep copy of the whole chain keeps the shared data_dir reference shared.
  return config_lib.finalize(c)


def sweep(attack_file: str) -> list[str]:
  """Every variant of a results table: defences x trials x seeds."""
  return common.sweep(attack_file, seeds=common.SEEDS, defences=DEFENCES)
