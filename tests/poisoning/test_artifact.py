"""The poison artifact: exact save/load round trip, apply, the dataset fingerprint check, and
the `config.attack` validation errors naming their fields."""

import dataclasses

import ml_collections
import numpy as np
import pytest

from robustdata.poisoning import artifact as art
from robustdata.registry import ConfigError


def _artifact(trigger=True, fingerprint="0123456789abcdef"):
  rng = np.random.default_rng(0)
  return art.PoisonArtifact(
      attack="sleeper_agent" if trigger else "gradient_matching",
      base_indices=np.array([5, 0, 17, 3]),
      perturbations=(rng.standard_normal((4, 4, 4, 3)) * 0.03).astype(np.float32),
      target_ids=np.array([7]), adversarial_class=2, eps=16 / 255, budget=0.01,
      substitute_run_id="substitute-0a1b2c3d4e5f", data_fingerprint=fingerprint,
      trigger=rng.uniform(size=(2, 2, 3)).astype(np.float32) if trigger else None,
      extra={"patch_size": 2, "positions": "random"})


@pytest.mark.parametrize("trigger", [True, False])
def test_round_trip_is_exact(tmp_path, trigger):
  a = _artifact(trigger)
  b = art.PoisonArtifact.load(a.save(str(tmp_path / "poisons")))
  for f in dataclasses.fields(a):
    x, y = getattr(a, f.name), getattr(b, f.name)
    if isinstance(x, np.ndarray):
      assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f.name
    else:
      assert x == y and type(x) is type(y), f.name


def test_apply_adds_and_clips_at_the_base_indices():
  a = _artifact()
  x = np.random.default_rng(1).uniform(size=(20, 4, 4, 3)).astype(np.float32)
  x[5] = 1.0
  out = a.apply(x)
  want = x.copy()
  for i, b in enumerate(a.base_indices):
    want[b] = np.clip(x[b].astype(np.float64) + a.perturbations[i], 0, 1)
  np.testing.assert_allclose(out, want, atol=1e-7)
  assert out.min() >= 0 and out.max() <= 1
  assert np.array_equal(np.delete(out, a.base_indices, 0), np.delete(x, a.base_indices, 0))
  with pytest.raises(ConfigError, match="poisons"):
    a.apply(x[:10])
  with pytest.raises(ConfigError, match="poisons"):
    a.apply(x[:, :3])


def test_fingerprint_check_refuses_another_dataset():
  rng = np.random.default_rng(2)
  x = rng.uniform(size=(30, 4, 4, 1)).astype(np.float32)
  y = rng.integers(0, 3, 30)
  fp = art.dataset_fingerprint(x, y)
  assert len(fp) == 16 and fp == art.dataset_fingerprint(x.copy(), y.copy())
  x2 = x.copy()
  x2[3, 1, 2, 0] += 1e-6
  y2 = y.copy()
  y2[0] = (y2[0] + 1) % 3
  others = {art.dataset_fingerprint(x2, y), art.dataset_fingerprint(x, y2),
            art.dataset_fingerprint(x.astype(np.float64), y),
            art.dataset_fingerprint(x.reshape(30, 16, 1, 1), y),
            art.dataset_fingerprint(x[:29], y[:29])}
  assert fp not in others and len(others) == 5
  a = _artifact(fingerprint=fp)
  a.check_fingerprint(fp)
  with pytest.raises(ConfigError, match=f"poisons.*{fp}.*{art.dataset_fingerprint(x2, y)}"):
    a.check_fingerprint(art.dataset_fingerprint(x2, y))


_DATA = dict(num_train_per_class=np.array([40, 50, 30]), num_test=25, num_classes=3,
             test_labels=np.arange(25) % 3)


def _cfg(**kw):
  base = dict(name="gradient_matching", eps=8 / 255, budget=0.1, adversarial_class=1,
              target_index=3, trigger="random")
  base.update(kw)
  return base


def test_valid_configs_give_the_poison_count():
  assert art.validate_attack(_cfg(), **_DATA) == 12
  assert art.validate_attack(ml_collections.ConfigDict(_cfg(budget=0.25)), **_DATA) == 30
  assert art.validate_attack(_cfg(name="sleeper_agent", target_index=None, source_class=0),
                             **_DATA) == 12
  assert art.validate_attack(_cfg(name="hidden_trigger", target_index=[0, 6]), **_DATA) == 12
  assert art.validate_attack(_cfg(name="hidden_trigger", source_class=1), **_DATA) == 12
  assert art.poison_count(0.01, 50000) == 500


@pytest.mark.parametrize("overrides, field", [
    (dict(name="frogs"), "config.attack.name"),
    (dict(eps=0.0), "config.attack.eps"),
    (dict(eps=-0.1), "config.attack.eps"),
    (dict(eps=1.5), "config.attack.eps"),
    (dict(eps="8"), "config.attack.eps"),
    (dict(budget=0.0), "config.attack.budget"),
    (dict(budget=-0.01), "config.attack.budget"),
    (dict(budget=0.5), "config.attack.budget"),        # 60 poisons > 50 images of class 1
    (dict(budget=0.001), "config.attack.budget"),      # 0 poisons
    (dict(adversarial_class=3), "config.attack.adversarial_class"),
    (dict(target_index=25), "config.attack.target_index"),
    (dict(target_index=-1), "config.attack.target_index"),
    (dict(target_index=[2, 30]), "config.attack.target_index"),
    (dict(target_index=4), "config.attack.target_index.*adversarial_class"),  # label 1
    (dict(name="sleeper_agent", source_class=1), "config.attack.source_class"),
    (dict(name="sleeper_agent", source_class=5), "config.attack.source_class"),
    (dict(name="sleeper_agent", source_class=None), "config.attack.source_class"),
    (dict(name="sleeper_agent", source_class=0, trigger="smiley"), "config.attack.trigger"),
    # The Hidden Trigger Backdoor moves its target image's class: it reads no source_class.
    (dict(name="hidden_trigger", source_class=2), "config.attack.source_class=2 is read by "
     "sleeper_agent only"),
    (dict(name="gradient_matching", source_class=0), "config.attack.source_class"),
    (dict(name="hidden_trigger", target_index=None), "config.attack.target_index"),
    (dict(name="hidden_trigger", target_index=1), "config.attack.target_index"),
    (dict(target_index=None), "config.attack.target_index"),
    (dict(name="hidden_trigger", trigger=None), "config.attack.trigger"),
])
def test_each_error_names_its_field(overrides, field):
  with pytest.raises(ConfigError, match=field):
    art.validate_attack(_cfg(**overrides), **_DATA)
