"""The paper-setting configs (configs/friendly_noise/*_cifar10.py) on a CIFAR-10-shaped tfds
directory written here: one --config.data.data_dir reaches all three stages, and every stage
validates against the data it reads (the tfds path, the attack's fields, the victim's
transfer setting) before anything compiles, in the paper's setting and in the smoke's (a small
CNN on a 2% subset of the train split). Running them is left out of the suite: a smoke chain
is 40-60 s on one core (cifar10_common.py's docstring)."""

import numpy as np
import pytest

from robustdata import config_lib, runner, validation
from robustdata.data import sources
from robustdata.registry import ConfigError
from tests.fake_tfds import write_fake_tfds

ATTACKS = ("bp", "gm", "sa", "htb")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  # 5,000 train images: the smoke's 2% subset still holds a 1% poison budget (one poison).
  write_fake_tfds(path, "cifar10", 5000, 40, (32, 32, 3), 10)
  return str(path)


def _config(attack: str, data_dir: str, variant: str = "smoke,friendly_random", **attack_fields):
  config = validation.load_config_file(f"configs/friendly_noise/{attack}_cifar10.py:{variant}")
  with config.unlocked():
    config.data.data_dir = data_dir  # what --config.data.data_dir does
    for field, value in attack_fields.items():
      config.poisons.attack[field] = value
  return config_lib.resolve(config)


def _test_labels(data_dir: str) -> np.ndarray:
  return sources.load(config_lib.from_dict({"name": "cifar10", "data_dir": data_dir,
                                            "val_fraction": 0.0})).test.y


def _other_class_target(data_dir: str) -> int:
  """A test index whose label is not the adversarial class 0."""
  return int(np.flatnonzero(_test_labels(data_dir) != 0)[0])


@pytest.mark.parametrize("variant", ["friendly_random", "smoke,friendly_random"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_the_chain_validates_on_a_prepared_tfds_dir(attack, variant, data_dir):
  fields = {} if attack == "sa" else {"target_index": _other_class_target(data_dir)}
  config = _config(attack, data_dir, variant, **fields)
  stages = [config, config.poisons, config.poisons.substitute]
  assert [c.data.data_dir for c in stages] == [data_dir] * 3
  smoke = variant.startswith("smoke")
  assert [c.model.name for c in stages] == ["cnn" if smoke else "resnet18"] * 3
  assert [c.data.get("subset_size", 1.0) for c in stages] == [0.02 if smoke else 1.0] * 3
  assert config.data.name == "cifar10"
  runner.validate_chain(config)
  if attack == "htb":  # the benchmark's transfer setting
    assert config.victim.init == "substitute" and config.victim.trainable == "last_layer"
  # Another data_dir is another run of every stage.
  other = _config(attack, data_dir + "/elsewhere", **fields)
  for a, b in zip(stages, [other, other.poisons, other.poisons.substitute]):
    assert config_lib.run_id(a) != config_lib.run_id(b)


def test_an_ensemble_of_substitutes_shares_the_data_dir(data_dir):
  target = _other_class_target(data_dir)
  single = _config("bp", data_dir, target_index=target)
  ensemble = _config("bp", data_dir, "smoke,friendly_random,ensemble3", target_index=target)
  sections = ["substitute", "substitute_1", "substitute_2"]
  assert [ensemble.poisons[k].data.data_dir for k in sections] == [data_dir] * 3
  assert [ensemble.poisons[k].seed for k in sections] == [100, 101, 102]
  runner.validate_chain(ensemble)
  # The first substitute is the single-substitute config's: the ensemble reuses its run.
  assert (config_lib.run_id(ensemble.poisons.substitute)
          == config_lib.run_id(single.poisons.substitute))
  assert config_lib.run_id(ensemble.poisons) != config_lib.run_id(single.poisons)


def test_a_target_of_the_adversarial_class_is_refused(data_dir):
  config = _config("gm", data_dir, target_index=int(np.flatnonzero(_test_labels(data_dir) == 0)[0]))
  with pytest.raises(ConfigError, match="config.attack.target_index=.*adversarial_class"):
    runner.validate_chain(config)
