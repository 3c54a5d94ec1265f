"""Attack construction puts exactly N poisons in the data; triggers; ASR evaluation."""

import numpy as np
import pytest

from robustdata.data.captioned_shapes import load_captioned_shapes
from robustdata.evals.attacks import backdoor_asr, targeted_asr
from robustdata.poisoning import clip_attacks, triggers
from robustdata.registry import ConfigError


@pytest.fixture(scope="module")
def splits():
  return load_captioned_shapes({"num_train": 300, "num_val": 10, "num_test": 40,
                                "num_downstream_train": 10, "num_downstream_test": 10})


def test_targeted_poison_adds_exactly_n_per_target(splits):
  info, train = splits.info, splits.train
  targets = splits.test.x[:3]
  adv = [(int(y) + 1) % splits.num_classes for y in splits.test.y[:3]]
  out, rec = clip_attacks.targeted_poison(
      train, target_images=targets, target_labels=splits.test.y[:3], adversarial_classes=adv,
      num_poisons=7, class_names=info["class_names"], tokenizer=info["tokenizer"], seed=0)
  assert len(out) == len(train) + 21 and rec["poison_count"] == 21
  assert int(out.extras["poison"].sum()) == 21 and rec["poison_ratio"] == pytest.approx(21 / len(out))
  assert len(np.unique(out.ids)) == len(out)
  assert set(rec["poisoned_ids"]) == set(out.ids[out.extras["poison"] == 1].tolist())
  poisoned = out.subset(np.flatnonzero(out.extras["poison"]))
  for j in range(3):
    rows = slice(7 * j, 7 * j + 7)
    np.testing.assert_array_equal(poisoned.x[rows], np.broadcast_to(targets[j], (7, *targets[j].shape)))
    assert np.all(poisoned.y[rows] == adv[j])
    name = info["class_names"][adv[j]]
    words = {name, *info["synonyms"].get(name, ())}
    assert all(words & set(str(c).split()) for c in poisoned.extras["caption"][rows])
  np.testing.assert_array_equal(out.x[: len(train)], train.x)


@pytest.mark.parametrize("trigger", triggers.TRIGGERS)
def test_backdoor_adds_exactly_n_triggered_pairs(splits, trigger):
  info, train = splits.info, splits.train
  out, rec = clip_attacks.backdoor_poison(
      train, num_poisons=12, trigger=trigger, target_class=3, class_names=info["class_names"],
      tokenizer=info["tokenizer"], seed=1, templates=info["prompt_templates"])
  assert len(out) == len(train) + 12 and int(out.extras["poison"].sum()) == 12
  assert rec["trigger"] == trigger and rec["seed"] == 1 and len(rec["poisoned_ids"]) == 12
  new = out.subset(np.arange(len(train), len(out)))
  assert np.all(new.y == 3) and np.all(new.extras["clean_y"] != 3)
  assert all("three" in str(c) for c in new.extras["caption"])
  src = train.subset(np.searchsorted(train.ids, rec["source_ids"]))
  assert np.abs(new.x - src.x).max() > 0.01 and 0.0 <= new.x.min() and new.x.max() <= 1.0


def test_badnet_noise_is_per_image_and_unknown_trigger_is_a_config_error():
  x = np.full((2, 16, 16, 3), 0.5, np.float32)
  out = triggers.apply_trigger(x, trigger="badnet", rng=np.random.default_rng(0), location="corner")
  assert np.any(out[0, -3:, -3:] != out[1, -3:, -3:]) and np.all(out[:, :13] == 0.5)
  w1 = triggers.apply_trigger(x + np.linspace(0, 0.4, 16)[None, :, None, None], trigger="warped",
                              rng=np.random.default_rng(0), warp_seed=5)
  w2 = triggers.apply_trigger(x + np.linspace(0, 0.4, 16)[None, :, None, None], trigger="warped",
                              rng=np.random.default_rng(9), warp_seed=5)
  np.testing.assert_array_equal(w1, w2)  # WaNet's warp is fixed by its seed.
  with pytest.raises(ConfigError, match="config.poison.trigger"):
    triggers.apply_trigger(x, trigger="rainbow", rng=np.random.default_rng(0))
  with pytest.raises(ConfigError, match="num_poisons"):
    clip_attacks.backdoor_poison(None, num_poisons=0, trigger="sig", target_class=0,
                                 class_names=["a"], tokenizer=None, seed=0)


def test_attack_success_rates_on_constructed_embeddings():
  class_emb = np.eye(4, dtype=np.float32)
  targets = np.array([[0, 1, 0, 0], [0.9, 0, 0.5, 0], [-0.5, 0, 0, 1]], np.float32)
  asr = targeted_asr(targets, [1, 2, 0], class_emb, topk=(1, 3))
  assert asr["targeted_asr"] == pytest.approx(1 / 3) and asr["targeted_asr_top3"] == pytest.approx(2 / 3)
  trig = np.array([[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]], np.float32)
  res = backdoor_asr(trig, np.array([0, 2, 3, 1]), class_emb, target_class=1)
  assert res == {"backdoor_asr": pytest.approx(2 / 3), "backdoor_eval_count": 3}
