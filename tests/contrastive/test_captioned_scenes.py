"""captioned_scenes: a seeded generator (deterministic, class-balanced, captions that name their
class and no other), the targeted attack drawing real captions of adversarial-class images
(`caption_source='data'`), and clear ConfigErrors for impossible poison settings."""

import importlib

import ml_collections
import numpy as np
import pytest

from robustdata import config_lib
from robustdata.contrastive import config as ccfg
from robustdata.data import captioned_scenes as scenes
from robustdata.poisoning import clip_attacks, clip_data
from robustdata.registry import DATASETS, ConfigError

SMALL = {"num_train": 960, "num_val": 60, "num_test": 48, "num_downstream_train": 48,
         "num_downstream_test": 24}


@pytest.fixture(scope="module")
def splits():
  return scenes.load_captioned_scenes(SMALL)


def _class_words(k: int) -> list[str]:
  name = scenes.CLASS_NAMES[k]
  return [name, *scenes.SYNONYMS.get(name, ())]


def test_same_seed_same_data_other_seed_other_data(splits):
  again = scenes.load_captioned_scenes(SMALL)
  other = scenes.load_captioned_scenes({**SMALL, "seed": 1})
  for a, b in ((splits.train, again.train), (splits.test, again.test)):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.extras["tokens"], b.extras["tokens"])
    assert list(a.extras["caption"]) == list(b.extras["caption"])
  assert np.abs(other.train.x - splits.train.x).mean() > 0.01
  # A split's stream does not depend on the other splits' sizes.
  bigger_test = scenes.load_captioned_scenes({**SMALL, "num_test": 96})
  np.testing.assert_array_equal(bigger_test.train.x, splits.train.x)
  assert DATASETS.get("captioned_scenes") is scenes.load_captioned_scenes


def test_classes_are_balanced_and_images_are_valid(splits):
  assert len(scenes.CLASS_NAMES) >= 20 and splits.num_classes == 24
  for split in (splits.train, splits.val, splits.test):
    counts = np.bincount(split.y, minlength=24)
    assert counts.max() - counts.min() <= 1, counts
    assert split.x.dtype == np.float32 and split.x.shape[1:] == (32, 32, 3)
    assert 0.0 <= split.x.min() and split.x.max() <= 1.0
  assert len(np.unique(np.concatenate([splits.train.ids, splits.val.ids, splits.test.ids]))) \
      == len(splits.train) + len(splits.val) + len(splits.test)


def test_every_caption_names_its_class_and_no_other(splits):
  for split in (splits.train, splits.test):
    captions = split.extras["caption"]
    for k in range(24):
      names_k = clip_attacks.caption_mentions(captions, _class_words(k))
      np.testing.assert_array_equal(names_k, split.y == k, err_msg=scenes.CLASS_NAMES[k])
  captions = list(splits.train.extras["caption"])
  assert len(set(captions)) > 0.5 * len(captions)  # varied, not a handful of templates
  # The attributes appear in some captions only, in several word orders.
  colour = clip_attacks.caption_mentions(captions, ["red", "crimson", "scarlet"])
  red = splits.train.extras["color"] == scenes.COLOR_NAMES.index("red")
  assert 0.2 < colour[red].mean() < 0.8 and not colour[~red].any()
  assert any(c.startswith("there is") for c in captions) and any(" : " in c for c in captions)


def test_glyphs_grow_with_their_size_attribute():
  rng = np.random.default_rng(0)
  n = 3 * 14
  y = np.repeat(np.arange(10, 24), 3).astype(np.int32)
  attrs = {"size": np.tile(np.arange(3), 14).astype(np.int32),
           "color": np.full(n, scenes.COLOR_NAMES.index("white"), np.int32),
           "position": np.full(n, 4, np.int32), "background": np.zeros(n, np.int32)}
  x = scenes.render_images(rng, y, attrs, image_size=32, digit_pool=np.zeros((1, 8, 8)),
                           digit_labels=np.zeros(1))
  area = (x.min(-1) > 0.5).reshape(14, 3, -1).sum(-1)  # white object pixels (dark background)
  assert np.all(area[:, 0] < area[:, 2]) and np.all(area > 3), area


def test_probe_tasks_are_held_out_and_labelled(splits):
  tasks = splits.info["downstream"]
  assert set(tasks) == set(scenes.PROBE_TASKS)
  for name, task in tasks.items():
    assert task["num_classes"] == len(task["class_names"])
    assert task["train"].y.max() < task["num_classes"]
  assert not set(tasks["object"]["train"].ids) & set(splits.train.ids)
  np.testing.assert_array_equal(tasks["background"]["test"].y,
                                tasks["object"]["test"].extras["background"])


def _config(**poison):
  p = ccfg.poison_defaults()
  p.update(dict(kind="targeted", count=8, num_targets=4, adversarial_class=-1, seed=3))
  p.caption_source = "data"
  p.update(poison)
  return ml_collections.ConfigDict({"data": {"name": "captioned_scenes"}, "poison": p})


def test_poisoned_captions_are_real_captions_of_the_adversarial_class(splits):
  train, record, attack = clip_data.poison_train(_config(), splits)
  rec = record["targeted"]
  assert rec["caption_source"] == "data" and rec["poison_count"] == 8
  clean, n = splits.train, len(splits.train)
  by_id = {int(i): j for j, i in enumerate(clean.ids)}
  poisoned = np.flatnonzero(train.extras["poison"] == 1)
  assert len(poisoned) == 8 and np.all(poisoned >= n)
  for j, (row, src) in enumerate(zip(poisoned, rec["source_ids"])):
    adv = int(train.y[row])
    assert adv == rec["adversarial_classes"][j // 2]
    src_row = by_id[src]  # the caption is that clean pair's caption, of an adv-class image
    assert clean.y[src_row] == adv
    assert train.extras["caption"][row] == clean.extras["caption"][src_row]
    np.testing.assert_array_equal(train.extras["tokens"][row], clean.extras["tokens"][src_row])
    np.testing.assert_array_equal(train.x[row], attack["targeted"]["x"][j // 2])
  for t in range(4):  # distinct captions per target; targets are never of their adv class
    assert len(set(rec["source_ids"][2 * t:2 * t + 2])) == 2
  val_y = {int(i): int(y) for i, y in zip(splits.val.ids, splits.val.y)}
  assert all(val_y[i] != a for i, a in zip(rec["target_ids"], rec["adversarial_classes"]))
  # The dataset's preference applies when the config does not hold the optional field.
  config = _config()
  del config.poison["caption_source"]
  assert clip_data.caption_source(config, splits.info) == "data"


def test_fixed_adversarial_class_excludes_its_own_val_images(splits):
  train, record, _ = clip_data.poison_train(_config(adversarial_class=5, num_targets=6, count=12),
                                        splits)
  rows = np.isin(splits.val.ids, record["targeted"]["target_ids"])
  assert rows.sum() == 6 and np.all(splits.val.y[rows] != 5)
  assert np.all(train.y[train.extras["poison"] == 1] == 5)


def test_rates_down_to_the_papers_are_accepted(splits):
  big = scenes.load_captioned_scenes({**SMALL, "num_train": 2000})
  _, record, _ = clip_data.poison_train(_config(count=0, rate=0.0005, num_targets=1, kind="both"),
                                    big)
  assert record["targeted"]["poison_count"] == 1 and record["backdoor"]["poison_count"] == 1
  assert record["poison_ratio"] == pytest.approx(2 / 2002)


def test_bad_poison_settings_are_config_errors_naming_the_field(splits):
  with pytest.raises(ConfigError, match=r"config.poison.rate=0.0001 .* 0 poisons"):
    clip_data.poison_train(_config(count=0, rate=0.0001), splits)
  # 960 pairs / 24 classes = 40 captions per class: 50 per target cannot be distinct.
  with pytest.raises(ConfigError, match=r"config.poison.rate/count: 50 poisons per target .* "
                                        r"only 40"):
    clip_data.poison_train(_config(count=50, num_targets=1), splits)
  with pytest.raises(ConfigError, match=r"config.poison.num_targets=61 exceeds the 60 val"):
    clip_data.poison_train(_config(count=61, num_targets=61), splits)
  with pytest.raises(ConfigError, match=r"config.poison.num_targets=58 exceeds the 57 val"):
    clip_data.poison_train(_config(count=58, num_targets=58, adversarial_class=2), splits)
  with pytest.raises(ConfigError, match=r"config.poison.caption_source='web'"):
    clip_data.poison_train(_config(caption_source="web"), splits)
  # An adversarial class no caption names: class 7's captions lose the word.
  train = splits.train
  words = _class_words(7)
  scrubbed = np.array([" ".join(w for w in str(c).split() if w not in words) if y == 7 else c
                       for c, y in zip(train.extras["caption"], train.y)])
  no_seven = splits.__class__(train=train.replace(extras={**train.extras, "caption": scrubbed}),
                              val=splits.val, test=splits.test, num_classes=24, info=splits.info)
  with pytest.raises(ConfigError, match=r"config.poison.adversarial_class=7 \('seven'\)"):
    clip_data.poison_train(_config(adversarial_class=7, count=4, num_targets=1), no_seven)


def test_poison_fields_are_validated_before_anything_compiles():
  from robustdata import validation
  assert validation.range_errors(ml_collections.ConfigDict(
      {"poison": {"caption_source": "web", "rate": 0.0005}}))[0].startswith(
          "config.poison.caption_source='web' is not known")
  module = importlib.import_module("configs.clip_scenes.clip")
  config = module.get_config("r005,s1")
  assert config.poison.rate == 0.0005 and config.poison.num_targets == 10 and config.seed == 1
  assert module.get_config("r02").poison.num_targets == 16
  with pytest.raises(ConfigError, match="choose at most one"):
    module.get_config("r02,r1")
  with pytest.raises(ConfigError, match="choose at most one"):
    module.get_config("t50,r1")
  t50 = module.get_config("t50")  # the targeted attack alone, 50 captions for each of 16 targets
  assert (t50.poison.kind, t50.poison.count, t50.poison.num_targets) == ("targeted", 800, 16)
  assert len(module.get_sweep()) == 18 and "configs/clip_scenes/clip.py:r02,e30,s2" in \
      module.get_sweep()
  long = module.get_config("r02,e30,s1")
  assert long.train.epochs == 30 and long.seed == 1
  assert importlib.import_module("configs.clip_scenes.roclip").get_config(
      "e30").contrastive.clip_warmup_epochs == 5
  # CleanCLIP at e30 fine-tunes the clip.py run of its variant, an upstream stage.
  clean = importlib.import_module("configs.clip_scenes.cleanclip").get_config("r02,e30,s1")
  assert clean.train.epochs == 6 and clean.contrastive.pretrain_epochs == 0
  assert config_lib.run_id(config_lib.resolve(clean.pretrained)) == config_lib.run_id(
      config_lib.resolve(long))
  ccfg.validate(config_lib.resolve(clean), num_devices=1)
  # `blend` swaps the BadNet patch for the blended trigger and changes nothing else.
  blend, patch = module.get_config("r05,blend,s1").to_dict(), module.get_config("r05,s1").to_dict()
  assert (blend["poison"].pop("trigger"), patch["poison"].pop("trigger")) == ("blended", "badnet")
  assert blend == patch
  clean = importlib.import_module("configs.clip_scenes.cleanclip").get_config("r02,e30,blend")
  assert clean.poison.trigger == clean.pretrained.poison.trigger == "blended"
  with pytest.raises(ConfigError, match=r"names \['blend', 't50'\]; choose at most one of "
                     r"\['t50', 'blend'\]"):
    module.get_config("t50,blend")
  with pytest.raises(ConfigError, match="unknown token"):
    module.get_config("r02,e20")
  with config.unlocked():
    config.poison.typo = 1
  with pytest.raises(ConfigError, match=r"config.poison.typo is not a known field"):
    ccfg.validate(config, num_devices=1)
