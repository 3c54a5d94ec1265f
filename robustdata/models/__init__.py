"""Model families, registered by `config.model.name`.

Each factory takes `(model_config, num_classes)`; `model_config` fields are read with the
defaults it registers (`MODELS.register(name, defaults=...)`), so configs only name what they
change and a run's config.json and hash still hold every value (`config_lib.with_defaults`).
"""

from __future__ import annotations

from robustdata.models.cnn import CNN
from robustdata.models.mlp import MLP
from robustdata.models.resnet import ResNet, ResNet18, ResNet20
from robustdata.registry import MODELS, field_reader


MLP_DEFAULTS = {"hidden": (256, 128)}
CNN_DEFAULTS = {"channels": (32, 64), "dense": 128, "norm": "none"}
RESNET20_DEFAULTS = {"norm": "batch", "width": 16}
RESNET18_DEFAULTS = {"norm": "batch", "width": 64}


@MODELS.register("mlp", defaults=MLP_DEFAULTS)
def _mlp(cfg, num_classes: int):
  get = field_reader(cfg, MLP_DEFAULTS)
  return MLP(num_classes=num_classes, hidden=tuple(get("hidden")))


@MODELS.register("cnn", defaults=CNN_DEFAULTS)
def _cnn(cfg, num_classes: int):
  get = field_reader(cfg, CNN_DEFAULTS)
  return CNN(num_classes=num_classes, channels=tuple(get("channels")), dense=get("dense"),
             norm=get("norm"))


@MODELS.register("resnet20", defaults=RESNET20_DEFAULTS)
def _resnet20(cfg, num_classes: int):
  get = field_reader(cfg, RESNET20_DEFAULTS)
  return ResNet20(num_classes, norm=get("norm"), width=get("width"))


@MODELS.register("resnet18", defaults=RESNET18_DEFAULTS)
def _resnet18(cfg, num_classes: int):
  get = field_reader(cfg, RESNET18_DEFAULTS)
  return ResNet18(num_classes, norm=get("norm"), width=get("width"))
