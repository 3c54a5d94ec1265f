"""The shared setup of the configs/clip_scenes configs (not a config itself): CLIP-family
pre-training on poisoned `captioned_scenes` at the papers' poison rates.

20,000 pairs of 24 object classes (10 handwritten digits, 14 glyphs) at 32x32 with sampled
captions, a small CLIP (CNN tower 16/32/64, 2-layer text transformer, 64-d), batch 128,
AdamW 2e-3 with 300 warm-up steps then cosine. Every run carries both attacks at the variant's
rate of the training pairs each: targeted (min(16, poisons) held-out val images, each paired
with real training captions of a random other class, `caption_source='data'`) and a BadNet
backdoor (5-px noise patch in the corner, captioned with a prompt naming 'star').

Variant tokens (comma-separated): a rate `r005` (0.05%), `r02` (0.2%), `r05` (0.5%) or `r1`
(1%, the default); a seed `s0` (default), `s1` or `s2`; `smoke` (1,200 pairs, 2 epochs, 8
poisons per attack, under a minute). At r005 the 10 targeted poisons go to 10 targets, one
caption each. `t50` (instead of a rate): the targeted attack alone, 16 targets x 50 real
captions each (800 poisons, 4% of the pairs). A target's pull grows with its own caption count:
plain CLIP (seed 0) flips 1 of 16 targets at r02 (2 captions each) and at r05 (6 each), 11 at
r1 (12 each) and all 16 at t50. The papers' notebook uses 100 per target, 0.16% of 1M pairs; on
20,000 pairs that count is a rate of 8%, so t50 is the nearest point to the papers' per-target
pull. `e30`: 30 epochs instead of 10, as the papers train 32-64 (r02 is attacked only then);
RoCLIP and the filter keep their 5 and 2 warm-up epochs, and CleanCLIP fine-tunes the finished
`clip.py` run of the same variant (its upstream stage, trained first or reused) for 6 epochs on
5,000 clean pairs. `blend`: the blended backdoor trigger (every image mixed with its own uniform
noise at weight 0.2, train and test) instead of the BadNet patch.
"""

import ml_collections

from robustdata import config_lib, validation
from robustdata.contrastive import config as contrastive_config

RATES = {"r005": 0.0005, "r02": 0.002, "r05": 0.005, "r1": 0.01}
CAPTIONS_PER_TARGET = {"t50": 50}  # targeted-only points: captions per target image
POINTS = (*RATES, *CAPTIONS_PER_TARGET)  # the table's points, at most one per variant
SEEDS = {"s0": 0, "s1": 1, "s2": 2}
EPOCHS = 10
LONG = {"e30": 30}  # training length tokens: epochs (CleanCLIP: of its upstream CLIP stage)
TRIGGERS = {"blend": "blended"}  # backdoor trigger tokens (default: the BadNet patch)
SWEEP_POINTS = (*POINTS, "r02,e30")  # r02 is attacked only with 30 epochs
NUM_TRAIN = 20000
MAX_TARGETS = 16  # the papers' 16 target images


def variant_tokens(arg, name: str) -> set[str]:
  """The variant tokens of `arg` for the config file of run name `name` (a ConfigError names
  an unknown, repeated or conflicting one)."""
  return validation.parse_variants(arg, ("smoke", *POINTS, *SEEDS, *LONG, *TRIGGERS),
                                   f"configs/clip_scenes/{name.removesuffix('_scenes')}.py",
                                   # t50 is the targeted attack alone: no backdoor to trigger
                                   exclusive=(POINTS, tuple(SEEDS),
                                              (*CAPTIONS_PER_TARGET, *TRIGGERS)))


def scenes_config(method: str, arg, *, name: str) -> tuple[ml_collections.ConfigDict, bool]:
  """(unlocked config of `method` on captioned_scenes for variant `arg`, whether smoke)."""
  tokens = variant_tokens(arg, name)
  smoke = "smoke" in tokens
  rate = RATES[next(iter(tokens & set(RATES)), "r1")]
  config = config_lib.base_config()
  config.name = name + ("_smoke" if smoke else "")
  config.seed = SEEDS[next(iter(tokens & set(SEEDS)), "s0")]
  config.trainer = "contrastive"
  config.method = method

  config.data.name = "captioned_scenes"
  config.data.seed = 0              # the generated images and captions (not the run seed)
  config.data.num_train = NUM_TRAIN
  config.data.num_val = 1000        # targeted-attack target images come from here
  config.data.num_test = 2000       # zero-shot accuracy and backdoor ASR
  config.data.num_downstream_train = 2000  # linear probe (object task, held-out writers)
  config.data.num_downstream_test = 1000
  config.data.image_size = 32
  config.data.context_length = 24

  config.model.name = "clip"
  config.model.image_tower = "cnn"
  config.model.cnn_widths = (16, 32, 64)
  config.model.embed_dim = 64
  config.model.text_width = 64
  config.model.text_depth = 2
  config.model.text_heads = 2

  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3  # peak LR of CLIP pre-training
  config.optim.weight_decay = 0.1
  config.optim.schedule = "cosine"

  config.train.epochs = next((LONG[t] for t in tokens & set(LONG)), EPOCHS)
  config.train.batch_size = 128
  config.train.eval_batch_size = 500
  config.train.log_every_steps = 50
  config.train.checkpoint_every_steps = 400
  config.train.eval_every_epochs = 1000  # evaluate at the end only

  config.contrastive = contrastive_config.contrastive_defaults(method)
  config.contrastive.warmup_steps = 300  # ~2 epochs (50: a loss plateau; clip-poisoning.md)
  config.poison = contrastive_config.poison_defaults()
  config.poison.kind = "both"
  config.poison.rate = rate          # poisoned pairs per attack, of the clean training pairs
  config.poison.num_targets = min(MAX_TARGETS, int(rate * NUM_TRAIN))
  config.poison.caption_source = "data"  # real captions of adversarial-class images
  config.poison.trigger = next((TRIGGERS[t] for t in tokens & set(TRIGGERS)), "badnet")
  config.poison.patch_size = 5       # badnet only
  config.poison.location = "corner"  # badnet only
  config.poison.target_class = 16    # 'star'
  config.poison.seed = 0
  per_target = next((CAPTIONS_PER_TARGET[t] for t in tokens & set(CAPTIONS_PER_TARGET)), 0)
  if per_target:
    config.poison.kind = "targeted"
    config.poison.count = config.poison.num_targets * per_target

  if smoke:
    config.data.num_train = 1200
    config.data.num_val = 48
    config.data.num_test = 240
    config.data.num_downstream_train = 240
    config.data.num_downstream_test = 120
    config.model.cnn_widths = (8, 16)
    config.model.embed_dim = 32
    config.model.text_width = 32
    config.model.text_depth = 1
    config.train.epochs = 2
    config.train.batch_size = 100
    config.train.eval_batch_size = 120
    config.train.log_every_steps = 4
    config.train.checkpoint_every_steps = 12
    config.train.progress = "none"
    config.contrastive.warmup_steps = 2
    config.poison.rate = 0.0
    config.poison.count = 8
    config.poison.num_targets = 2
  return config, smoke


def sweep(path: str) -> list[str]:
  """The table's points of the config file at `path`: (4 rates + t50 + r02 in 30 epochs) x 3
  seeds, as variant specs."""
  return [f"{path}:{r},{s}" for r in SWEEP_POINTS for s in SEEDS]
