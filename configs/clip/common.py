"""The shared embedded setup of the poisoning-robust CLIP configs (not a config itself).

A small CLIP (CNN image tower, 2-layer text transformer, 64-d joint space) on 1,536
`captioned_shapes` pairs of the 6 drawn shapes at 24x24 with object-centred captions
(`caption_style='object'`), batch 128, 25 epochs, AdamW 2e-3; the attack is both a targeted
caption poisoning of 4 held-out images and a BadNet backdoor (5-px corner patch, target class
'circle'), each with `count` poisons (default 32, about 2% each), so one run reports the clean
utility and both attack success rates. Object-centred captions and 25 epochs are what make CLIP
learn the shapes: with the 'attributes' captions a batch of 128 is matched by colour, position
and size, and unpoisoned CLIP stays near chance zero-shot (0.17 after 15 epochs, against 0.65
with object-centred captions after 25; docs/results/clip-poisoning.md, "Captions").
Method files change the `method` and its `contrastive` section only; `cc3m_config` is the
papers' CSV setting.
"""

import ml_collections

from robustdata import config_lib, validation
from robustdata.contrastive import config as contrastive_config

def _contrastive_base(method: str, arg, *, name: str) -> ml_collections.ConfigDict:
  """The base config of a contrastive run of `method` (variant `arg` checked)."""
  validation.parse_variants(arg, ("smoke",), name)
  config = config_lib.base_config()
  config.name = name
  config.seed = 0
  config.trainer = "contrastive"
  config.method = method
  return config


def shapes_config(method: str, arg=None, *, name: str) -> ml_collections.ConfigDict:
  """An unlocked config of `method` on captioned_shapes; `arg` 'smoke' shrinks it for tests."""
  config = _contrastive_base(method, arg, name=name)

  config.data.name = "captioned_shapes"
  config.data.seed = 0              # the rendered images and captions (not the run seed)
  config.data.classes = "shapes"    # 6 classes: square, circle, triangle, cross, ring, diamond
  config.data.num_train = 1536
  config.data.num_val = 100         # targeted-attack target images come from here
  config.data.num_test = 500        # zero-shot accuracy and backdoor ASR
  config.data.num_downstream_train = 500  # linear probe (object task, held-out digits)
  config.data.num_downstream_test = 500
  config.data.image_size = 24
  config.data.context_length = 16
  config.data.caption_style = "object"  # every caption names the shape (module docstring)

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

  config.train.epochs = 25
  config.train.batch_size = 128
  config.train.eval_batch_size = 250
  config.train.log_every_steps = 15
  config.train.checkpoint_every_steps = 100
  config.train.eval_every_epochs = 1000  # evaluate at the end only

  config.contrastive = contrastive_config.contrastive_defaults(method)
  config.contrastive.warmup_steps = 30
  config.poison = contrastive_config.poison_defaults()
  config.poison.kind = "both"
  config.poison.count = 32           # per attack: 32/1600 = 2% targeted + 2% backdoor
  config.poison.num_targets = 4      # 8 poisons per target image
  config.poison.trigger = "badnet"
  config.poison.patch_size = 5
  config.poison.location = "corner"
  config.poison.target_class = 1     # 'circle'
  config.poison.seed = 0

  if arg == "smoke":
    config.name = name + "_smoke"
    config.data.num_train = 256
    config.data.num_val = 16
    config.data.num_test = 64
    config.data.num_downstream_train = 64
    config.data.num_downstream_test = 64
    config.model.cnn_widths = (8, 16)
    config.model.embed_dim = 32
    config.model.text_width = 32
    config.model.text_depth = 1
    config.train.epochs = 2
    config.train.batch_size = 64
    config.train.eval_batch_size = 64
    config.train.log_every_steps = 2
    config.train.checkpoint_every_steps = 4
    config.train.progress = "none"
    config.contrastive.warmup_steps = 2
    config.poison.count = 8
    config.poison.num_targets = 2
  return config


def cc3m_config(method: str, arg=None, *, name: str) -> ml_collections.ConfigDict:
  """An unlocked config of `method` on a local CC3M-style CSV at the papers' scale.

  The papers train OpenAI's RN50 CLIP from scratch; robustdata has no RN50 tower yet, so the
  closest one here is a ViT-B/32 image tower at 224 px with the RN50 text tower and joint
  space (12 layers, width 512, 8 heads, 77 tokens, 1024-d). Poisons are rows of the CSV, as in
  the papers' repositories (`poison.kind` stays 'none'); caption_csv carries no class names,
  so results.json holds the training record and the evaluations are null.
  """
  config = _contrastive_base(method, arg, name=name)

  config.data.name = "caption_csv"
  config.data.train_file = "data/cc3m/train.csv"  # (image, caption) rows; override per machine
  config.data.image_key = "image"
  config.data.caption_key = "caption"
  config.data.image_size = 224
  config.data.context_length = 77

  config.model.name = "clip"
  config.model.image_tower = "vit"
  config.model.vit_patch_size = 32
  config.model.vit_width = 768
  config.model.vit_depth = 12
  config.model.vit_heads = 12
  config.model.embed_dim = 1024
  config.model.text_width = 512
  config.model.text_depth = 12
  config.model.text_heads = 8

  config.optim.name = "adamw"
  config.optim.learning_rate = 5e-4
  config.optim.weight_decay = 0.1
  config.optim.schedule = "cosine"

  config.train.epochs = 32
  config.train.batch_size = 128
  config.train.eval_batch_size = 256
  config.train.log_every_steps = 100
  config.train.checkpoint_every_steps = 2000
  config.train.eval_every_epochs = 1000

  config.contrastive = contrastive_config.contrastive_defaults(method)
  config.contrastive.warmup_steps = 10000
  config.poison = contrastive_config.poison_defaults()

  if arg == "smoke":
    config.name = name + "_smoke"
    config.data.image_size = 32
    config.data.context_length = 32
    config.model.vit_patch_size = 8
    config.model.vit_width = 32
    config.model.vit_depth = 1
    config.model.vit_heads = 2
    config.model.embed_dim = 32
    config.model.text_width = 32
    config.model.text_depth = 1
    config.model.text_heads = 2
    config.train.epochs = 2
    config.train.batch_size = 16
    config.train.eval_batch_size = 16
    config.train.log_every_steps = 1
    config.train.checkpoint_every_steps = 10
    config.contrastive.warmup_steps = 2
  return config
