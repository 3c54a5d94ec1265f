"""Small name -> factory registries, so configs choose components by name.

Every registry raises one clear error naming the config field, the bad value and the allowed
values, so a typo in a config stops before anything compiles.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Mapping, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
  """A config (or an input derived from it) is invalid. The message names the field."""


class Registry(Generic[T]):
  """A registry of factories keyed by name, tied to the config field that selects them."""

  def __init__(self, field: str):
    self.field = field
    self._entries: dict[str, T] = {}
    self._defaults: dict[str, dict[str, Any]] = {}

  def register(self, name: str, *, defaults: Mapping[str, Any] | None = None
               ) -> Callable[[T], T]:
    """Registers a factory under `name`. `defaults` are the fields it reads from its config
    section with their default values (a class may declare them as its `DEFAULTS` attribute
    instead, as the data policies do); `config_lib.with_defaults` writes the missing ones into
    a run's config, so they are part of its hash and of config.json."""
    def decorator(obj: T) -> T:
      if name in self._entries and self._entries[name] is not obj:
        raise ValueError(f"'{name}' is already registered for {self.field}")
      self._entries[name] = obj
      declared = defaults if defaults is not None else getattr(obj, "DEFAULTS", None)
      self._defaults[name] = declared if declared is not None else {}  # the factory's own dict
      return obj
    return decorator

  def defaults(self, name: str) -> dict[str, Any]:
    """The declared config fields of `name` with their defaults (a copy; {} if none)."""
    self.get(name)
    return dict(self._defaults.get(name, {}))

  def get(self, name: str) -> T:
    _import_plugins()
    if name not in self._entries:
      raise ConfigError(
          f"{self.field}={name!r} is not known; allowed values: {sorted(self._entries)}")
    return self._entries[name]

  def names(self) -> list[str]:
    _import_plugins()
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    _import_plugins()
    return name in self._entries


def field_reader(section: Any, defaults: Mapping[str, Any]) -> Callable[[str], Any]:
  """`get(k)` for a factory: field k of its config section (which may be None), else
  `defaults[k]` — the dict it registers, so what it reads and what is hashed agree; a field not
  in `defaults` is a KeyError."""
  return lambda k: section.get(k, defaults[k]) if section is not None else defaults[k]


def check_known_fields(section: Any, defaults: Mapping[str, Any], path: str) -> None:
  """ConfigError for a field of `section` (e.g. config.attack at path 'config.attack') that
  `defaults` does not declare."""
  for key in section.keys():
    if key not in defaults:
      raise ConfigError(f"{path}.{key} is not a known field; allowed: {sorted(defaults)}")


_PLUGINS_IMPORTED = False


def _import_plugins() -> None:
  """Imports the modules that register components (once), so lookups see all of them."""
  global _PLUGINS_IMPORTED
  if _PLUGINS_IMPORTED:
    return
  _PLUGINS_IMPORTED = True
  import importlib
  for module in PLUGIN_MODULES:
    importlib.import_module(module)


# Modules whose import registers datasets, models, policies, objectives and gradient rules.
# A new family adds its module here.
PLUGIN_MODULES = [
    "robustdata.data.sources",
    "robustdata.data.spuco_digits",
    "robustdata.data.pde_synthetic",
    "robustdata.data.group_folders",
    "robustdata.data.captioned_shapes",
    "robustdata.data.captioned_scenes",
    "robustdata.data.caption_csv",
    "robustdata.models",
    "robustdata.models.pde_conv",
    "robustdata.models.clip",
    "robustdata.data.policies",
    "robustdata.train.objectives",
    "robustdata.label_noise.objectives",
    "robustdata.train.grad_rules",
    "robustdata.train.supervised",
    "robustdata.spurious.policies",
    "robustdata.spurious.objectives",
    "robustdata.selection.policies",
    "robustdata.privacy.register",
    "robustdata.contrastive.trainer",
    "robustdata.poisoning.craft",
    "robustdata.poisoning.victim",
    "robustdata.poisoning.epic",
    "robustdata.spurious.infer_stage",
]

# The registries. Components register with e.g. `@DATASETS.register("digits")`.
DATASETS: Registry = Registry("config.data.name")
MODELS: Registry = Registry("config.model.name")
POLICIES: Registry = Registry("config.policy.name")
OBJECTIVES: Registry = Registry("config.method")
GRAD_RULES: Registry = Registry("config.privacy.mode")
# `fn(config, run_dir) -> results dict`: the supervised loop, or e.g. contrastive pre-training.
TRAINERS: Registry = Registry("config.trainer")
