"""Model families, registered by `config.model.name`.

Each factory takes `(model_config, num_classes)`; `model_config` fields are read with the
defaults it registers (`MODELS.register(name, defaults=...)`), so configs only name what they
change and a run's config.json and hash still hold every value (`config_lib.with_defaults`).
"""

from __future__ import annotations

from robustdata.models.cnn import CNN
from robustdata.models.mlp import MLP
from robustdata.models.resnet import ResNet, ResNet18, ResNet20, ResNet32
from robustdata.registry import MODELS, ConfigError, field_reader


MLP_DEFAULTS = {"hidden": (256, 128)}
CNN_DEFAULTS = {"channels": (32, 64), "dense": 128, "norm": "none"}
RESNET20_DEFAULTS = {"norm": "batch", "width": 16}
RESNET32_DEFAULTS = {"norm": "batch", "width": 16}
RESNET18_DEFAULTS = {"norm": "batch", "width": 64}


# config.model.width, the base count k of a width sweep (spec §8): the ResNets' registered
# field (stages k, 2k, 4k); for the MLP and the CNN an optional field (config_lib.
# OPTIONAL_FIELDS), None keeping `hidden` / `channels` and `dense` as they are, so their run ids
# do not change unless it is set. See `mlp_hidden` and `cnn_shape` for what k sets.
def read_width(cfg, default=None):
  """config.model.width as a positive int, `default` when it is unset (None)."""
  width = cfg.get("width") if cfg is not None else None
  if width is None:
    return default
  if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
    raise ConfigError(f"config.model.width={width!r} must be a positive integer (the base "
                      "channel / unit count k)")
  return width


def mlp_hidden(width: int, layers: int) -> tuple[int, ...]:
  """The hidden sizes of an MLP of width k with `layers` hidden layers: (..., 4k, 2k, k), so
  the default (256, 128) is width 128."""
  return tuple(width * 2**(layers - 1 - i) for i in range(layers))


def cnn_shape(width: int, blocks: int) -> tuple[tuple[int, ...], int]:
  """(channels, dense) of a CNN of width k with `blocks` conv blocks: (k, 2k, 4k, ...) and a
  Dense layer of 4k, so the default ((32, 64), 128) is width 32."""
  return tuple(width * 2**i for i in range(blocks)), 4 * width


@MODELS.register("mlp", defaults=MLP_DEFAULTS)
def _mlp(cfg, num_classes: int):
  get = field_reader(cfg, MLP_DEFAULTS)
  hidden, width = tuple(get("hidden")), read_width(cfg)
  if width is not None:
    hidden = mlp_hidden(width, len(hidden))
  return MLP(num_classes=num_classes, hidden=hidden)


@MODELS.register("cnn", defaults=CNN_DEFAULTS)
def _cnn(cfg, num_classes: int):
  get = field_reader(cfg, CNN_DEFAULTS)
  channels, dense, width = tuple(get("channels")), get("dense"), read_width(cfg)
  if width is not None:
    channels, dense = cnn_shape(width, len(channels))
  return CNN(num_classes=num_classes, channels=channels, dense=dense, norm=get("norm"))


@MODELS.register("resnet20", defaults=RESNET20_DEFAULTS)
def _resnet20(cfg, num_classes: int):
  get = field_reader(cfg, RESNET20_DEFAULTS)
  return ResNet20(num_classes, norm=get("norm"),
                  width=read_width(cfg, RESNET20_DEFAULTS["width"]))


@MODELS.register("resnet32", defaults=RESNET32_DEFAULTS)
def _resnet32(cfg, num_classes: int):
  get = field_reader(cfg, RESNET32_DEFAULTS)
  return ResNet32(num_classes, norm=get("norm"),
                  width=read_width(cfg, RESNET32_DEFAULTS["width"]))


@MODELS.register("resnet18", defaults=RESNET18_DEFAULTS)
def _resnet18(cfg, num_classes: int):
  get = field_reader(cfg, RESNET18_DEFAULTS)
  return ResNet18(num_classes, norm=get("norm"),
                  width=read_width(cfg, RESNET18_DEFAULTS["width"]))
