"""Model families, registered by `config.model.name`.

Each factory takes `(model_config, num_classes)`; `model_config` fields are read with defaults
so configs only name what they change.
"""

from __future__ import annotations

from robustdata.models.cnn import CNN
from robustdata.models.mlp import MLP
from robustdata.models.resnet import ResNet, ResNet18, ResNet20
from robustdata.registry import MODELS


@MODELS.register("mlp")
def _mlp(cfg, num_classes: int):
  return MLP(num_classes=num_classes, hidden=tuple(cfg.get("hidden", (256, 128))))


@MODELS.register("cnn")
def _cnn(cfg, num_classes: int):
  return CNN(num_classes=num_classes, channels=tuple(cfg.get("channels", (32, 64))),
             dense=cfg.get("dense", 128), norm=cfg.get("norm", "none"))


@MODELS.register("resnet20")
def _resnet20(cfg, num_classes: int):
  return ResNet20(num_classes, norm=cfg.get("norm", "batch"), width=cfg.get("width", 16))


@MODELS.register("resnet18")
def _resnet18(cfg, num_classes: int):
  return ResNet18(num_classes, norm=cfg.get("norm", "batch"), width=cfg.get("width", 64))
