"""Builders of the clean-label poisoning experiments: three stages, each a run of its own.

  substitute (trainer supervised)  ->  poisons (trainer poison_craft)  ->  victim (poison_victim)

The victim's config holds the crafting stage's whole config in `config.poisons`, which holds the
substitute's in `config.poisons.substitute`; each stage's run id is the hash of its own config,
so victims with another defence on the same poisons reuse the substitute and the poisons.

Variant tokens (comma-separated): `smoke`; a defence (`none` [default], `random`, `friendly`,
`friendly_random`, `dp`, `epic`) or `clean` (the control: the same victim on the clean train
split, the poisons crafted but not applied); `trial<k>` (k = 0..TRIALS-1: the k-th target,
another test image); `seed<s>` (the victim's initialisation and data order; s = 0, 1, 2);
`ensemble3` (Bullseye Polytope only: the poisons crafted against three substitutes, the
configured one and two more seeds, as the official attack's ensemble).

Budgets on digits: eps = 0.3 (l_inf, pixel units), the budget the adversarial-example literature
uses for MNIST-like digits (at CIFAR's 8/255 the digits CNN's features barely move); 4% of the
train split (50 poisons of class 0). The defence keeps the paper's ratios to eps (zeta = 2 eps,
random Bernoulli noise and the noise's initialisation eps) and begins at epoch 5.
"""

from __future__ import annotations

import functools

import ml_collections
import numpy as np

from robustdata import config_lib, validation
from robustdata.data import sources
from robustdata.poisoning import craft, friendly_noise

DEFENCES = ("none", "random", "friendly", "friendly_random", "dp", "epic")
CONTROL = "clean"
TRIALS = 10
SEEDS = 3
ENSEMBLE_SIZE = 3  # Bullseye Polytope against 3 substitutes (craft.ensemble_sections)
ENSEMBLE = f"ensemble{ENSEMBLE_SIZE}"
TOKENS = ("smoke", CONTROL, *DEFENCES, *(f"trial{k}" for k in range(TRIALS)),
          *(f"seed{s}" for s in range(SEEDS)), ENSEMBLE)
SUBSTITUTE_SEED = 100


def digits_data(c: ml_collections.ConfigDict) -> None:
  """The embedded digits upsampled to 16x16: an l_inf budget of 16/255 then has 256 pixels per
  image to act on (8x8 gives the attacks too little room)."""
  c.data.name = "digits"
  c.data.upsample = 2
  c.data.augment = ()
  c.model.name = "cnn"
  c.model.channels = (32, 64)
  c.model.dense = 128
  c.model.norm = "none"
  c.optim.name = "sgd"
  c.optim.learning_rate = 0.05
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.train.batch_size = 64
  c.train.eval_batch_size = 512
  c.train.progress = "log"


def substitute_config(dataset: str, *, smoke: bool, seed: int = SUBSTITUTE_SEED
                      ) -> ml_collections.ConfigDict:
  """The clean model the poisons are crafted against (its own seed, fixed across victims)."""
  c = config_lib.base_config()
  c.name = f"fn_substitute_{dataset}" + ("_smoke" if smoke else "")
  c.seed = seed
  DATA[dataset](c)
  c.train.epochs = 2 if smoke else 20
  c.train.log_every_steps = 20
  c.train.checkpoint_every_steps = 200
  return config_lib.finalize(c)


@functools.lru_cache(maxsize=None)
def _test_labels(dataset: str) -> np.ndarray:
  c = config_lib.base_config()
  DATA[dataset](c)
  return sources.load(c.data).test.y


def substitutes_of(tokens) -> int:
  """How many substitutes the variant's poisons are crafted against."""
  return ENSEMBLE_SIZE if ENSEMBLE in tokens else 1


def ensemble_tag(substitutes: int) -> str:
  """The run-name suffix of an ensemble ('' for one substitute)."""
  return f"_ens{substitutes}" if substitutes > 1 else ""


def add_ensemble(c: ml_collections.ConfigDict, substitutes: int, make_substitute) -> None:
  """The extra substitutes of a crafting config, config.substitute_1, ... (seeds
  SUBSTITUTE_SEED + 1, ...): `make_substitute(seed)` builds each one's config."""
  for k in range(1, substitutes):
    c[f"{craft.ENSEMBLE_PREFIX}{k}"] = make_substitute(SUBSTITUTE_SEED + k)


def target_index(dataset: str, adversarial_class: int, trial: int) -> int:
  """The `trial`-th target: a test image of another class than the adversarial one, drawn by a
  fixed permutation of the test split."""
  labels = _test_labels(dataset)
  order = np.random.default_rng(1234).permutation(len(labels))
  return int([i for i in order if labels[i] != adversarial_class][trial])


def poisons_config(attack: dict, dataset: str, *, trial: int, smoke: bool, substitutes: int = 1
                   ) -> ml_collections.ConfigDict:
  """The crafting stage: `attack` overrides craft.ATTACK_DEFAULTS; with `substitutes` > 1 the
  poisons are crafted against that many substitutes (seeds SUBSTITUTE_SEED, +1, ...), the extra
  ones in config.substitute_1, ... (each its own run, shared by every trial)."""
  c = config_lib.base_config()
  c.trainer = "poison_craft"
  c.name = (f"fn_craft_{attack['name']}_{dataset}" + ensemble_tag(substitutes)
            + ("_smoke" if smoke else ""))
  c.seed = 0
  DATA[dataset](c)
  c.train.epochs = 1  # crafting counts restarts (config.attack.restarts)
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 1
  c.attack = attack_section(attack, trial)
  if c.attack.name != "sleeper_agent":
    c.attack.target_index = target_index(dataset, c.attack.adversarial_class, trial)
  if smoke:
    c.attack.iterations = 5
    c.attack.restarts = 1
    c.attack.retrain_every = min(c.attack.retrain_every, 2)
  c.substitute = substitute_config(dataset, smoke=smoke)
  add_ensemble(c, substitutes, lambda seed: substitute_config(dataset, smoke=smoke, seed=seed))
  return config_lib.finalize(c)


def victim_config(attack: dict, dataset: str, arg, *, what: str, transfer: bool = False,
                  fine_tune: bool = False) -> ml_collections.ConfigDict:
  """The victim run of `attack` on `dataset` for the variant tokens of `arg`: trained from
  scratch, or (`transfer`) the benchmark's transfer setting: the substitute's feature
  extractor frozen and its last layer trained on the poisoned data, or (`fine_tune`) the whole
  substitute trained on the poisoned data for 5 epochs, the defence from the first."""
  tokens, defence, trial, seed = parse_tokens(arg, what)
  smoke = "smoke" in tokens
  c = config_lib.base_config()
  c.trainer = "poison_victim"
  c.name = (f"fn_{attack['name']}_{dataset}_{defence}_t{trial}_s{seed}"
            + ensemble_tag(substitutes_of(tokens)) + ("_smoke" if smoke else ""))
  c.seed = seed
  DATA[dataset](c)
  c.train.epochs = 2 if smoke else 20
  c.train.log_every_steps = 20
  c.train.checkpoint_every_steps = 200
  # The defence's magnitudes keep the paper's ratios to the attack budget (zeta = 16/255 and a
  # random 8/255 against eps = 8/255): zeta = 2 eps, random noise and initialisation = eps.
  c.friendly = friendly_section(defence, begin_epoch=1 if smoke else 5,  # the README's command
                                scale=attack["eps"] / (8 / 255))
  if smoke:
    c.friendly.iterations = 3
  if defence == "dp":  # DP-SGD as a poisoning defence, at one epsilon
    c.policy.name = "poisson"
    c.privacy.mode = "dp_sgd"
    c.privacy.sampling = "poisson"
    c.privacy.clip_norm = 1.0
    c.privacy.target_epsilon = 8.0
    c.privacy.clipping = "ghost"
  if transfer:
    c.victim = ml_collections.ConfigDict({"init": "substitute", "trainable": "last_layer"})
    c.train.epochs = 2 if smoke else 10
  if fine_tune:
    c.name = c.name.replace(f"_{dataset}_", f"_{dataset}_finetune_", 1)
    c.victim = ml_collections.ConfigDict({"init": "substitute", "trainable": "all",
                                          "head": "substitute"})
    c.train.epochs = 2 if smoke else 5
    c.friendly.begin_epoch = 0  # the model is trained already: noise from the first epoch
  if defence == CONTROL:
    c.victim = c.get("victim") or ml_collections.ConfigDict()
    c.victim.poisoned = False
  if defence == "epic":
    c.policy.update(epic_section(scratch=not (transfer or fine_tune), fine_tune=fine_tune,
                                 smoke=smoke))
  c.poisons = poisons_config(attack, dataset, trial=trial, smoke=smoke,
                             substitutes=substitutes_of(tokens))
  return config_lib.finalize(c)


def sweep(attack_file: str, *, trials: int = TRIALS, seeds: int = 1,
          defences: tuple[str, ...] = DEFENCES) -> list[str]:
  """The variants of the results table: defences x trials (targets) x victim seeds; each trial
  crafts its own poisons once for all defences and seeds."""
  return [f"{attack_file}:{d},trial{k},seed{s}" for k in range(trials) for d in defences
          for s in range(seeds)]


def parse_tokens(arg, what: str, *, defences: tuple[str, ...] = (CONTROL, *DEFENCES),
                 tokens: tuple[str, ...] = TOKENS) -> tuple[set[str], str, int, int]:
  """(tokens, defence, trial, seed) of a victim config's variant `arg`."""
  given = validation.parse_variants(arg, tokens, what, exclusive=(
      defences, [f"trial{k}" for k in range(TRIALS)], [f"seed{s}" for s in range(SEEDS)]))
  defence = next((t for t in defences if t in given), "none")
  trial = next((k for k in range(TRIALS) if f"trial{k}" in given), 0)
  seed = next((s for s in range(SEEDS) if f"seed{s}" in given), 0)
  return given, defence, trial, seed


def friendly_section(defence: str, *, begin_epoch: int, scale: float = 1.0
                     ) -> ml_collections.ConfigDict:
  """config.friendly of `defence`: Friendly Noise on for friendly*, Bernoulli noise on for
  *random, the magnitudes (clamp, init, noise_eps) `scale` times the reference's."""
  f = ml_collections.ConfigDict(
      {k: v for k, v in friendly_noise.DEFAULTS.items() if k != "milestones"})
  f.begin_epoch = begin_epoch
  for field in ("clamp", "init", "noise_eps"):
    f[field] = friendly_noise.DEFAULTS[field] * scale
  f.enabled = defence in ("friendly", "friendly_random")
  f.noise_kind = "bernoulli" if defence in ("random", "friendly_random") else "none"
  return f


def epic_section(*, scratch: bool, fine_tune: bool, smoke: bool) -> dict:
  """The config.policy fields of the `epic` defence (robustdata/poisoning/epic.py), the
  reference's schedules scaled to these runs' lengths: transfer, medoids for 20% of the split
  every epoch from epoch 1; from scratch, every epoch from a quarter of training (epoch 5 of
  20); fine-tuning, 60% every epoch from epoch 1."""
  return {"name": "epic", "subset_fraction": 0.6 if fine_tune else 0.2, "epic_every": 1,
          "epic_start_epoch": 5 if scratch and not smoke else 1}


def attack_section(attack: dict, trial: int) -> ml_collections.ConfigDict:
  """config.attack: craft.ATTACK_DEFAULTS with `attack` over them, seeded by the trial."""
  a = ml_collections.ConfigDict(dict(craft.ATTACK_DEFAULTS))
  a.update(attack)
  a.seed = trial
  return a


def shapes_data(c: ml_collections.ConfigDict) -> None:
  """The embedded captioned shapes as a 16-class classification task (24x24 RGB: a digit or a
  shape with a random colour, size and quadrant), harder than the digits: the model must learn
  the object across colours and positions."""
  digits_data(c)
  c.data.name = "captioned_shapes"
  del c.data.upsample
  c.data.caption_style = "object"


DATA = {"digits": digits_data, "shapes": shapes_data}
