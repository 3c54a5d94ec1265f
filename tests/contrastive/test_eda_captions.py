"""RoCLIP's `contrastive.eda_captions`: 'once' is the reference (one EDA view per pair for the
whole run, bit for bit as before the field existed), 'epoch' draws the views anew each epoch
(reproducibly), 'off' feeds the original captions while the image chain still augments; the
'none' image chain is the identity; a bad value is a named ConfigError."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustdata.contrastive import config as contrastive_config
from robustdata.contrastive import data as contrastive_data
from robustdata.data import image_augment as augment
from robustdata.data.caption_augment import eda_tokens
from robustdata.registry import ConfigError


def _config(mode: str | None = None, *, augment_on: bool = True):
  config = importlib.import_module("configs.roclip.shapes").get_config("smoke")
  with config.unlocked():
    config.contrastive.augment = augment_on
    if mode is not None:
      config.contrastive.eda_captions = mode
  return config


def test_default_is_the_reference_once_per_run():
  assert contrastive_config.contrastive_defaults("roclip").eda_captions == "once"
  assert importlib.import_module("configs.roclip.cc3m").get_config().contrastive.eda_captions \
      == "once"
  for method in ("clip", "safeclip", "cleanclip"):  # their hashed configs do not change
    assert "eda_captions" not in contrastive_config.contrastive_defaults(method)


def test_once_is_one_view_for_every_epoch(splits):
  config = _config("once")
  tokens = splits.train.extras["tokens"]
  rng = np.random.default_rng(np.random.SeedSequence([config.seed, 63, 1]))
  expected = eda_tokens(tokens, rng, tokenizer=splits.info["tokenizer"],
                        synonyms=splits.info["synonyms"])
  for epoch in (0, 3):
    views = contrastive_data.caption_views(config, splits, splits.train, epoch=epoch)
    np.testing.assert_array_equal(views["eda1"], expected)
  first, second = contrastive_data.step_tokens(config, "clip", tokens, views)
  np.testing.assert_array_equal(first, expected)
  np.testing.assert_array_equal(second, expected)


def test_epoch_redraws_the_views_reproducibly(splits):
  config = _config("epoch")
  view = lambda e: contrastive_data.caption_views(config, splits, splits.train, epoch=e)["eda1"]
  v0, v1 = view(0), view(1)
  np.testing.assert_array_equal(v0, view(0))  # a resumed epoch sees the same captions
  changed = (v0 != v1).any(axis=1).mean()
  assert changed > 0.3, changed  # one EDA op per caption: most rows differ between epochs
  first, _ = contrastive_data.step_tokens(config, "roclip_match", splits.train.extras["tokens"],
                                    {"eda1": v1})
  np.testing.assert_array_equal(first, v1)


@pytest.mark.parametrize("kind", ["clip", "roclip_match"])
def test_off_feeds_the_original_captions(splits, kind):
  config = _config("off")
  assert contrastive_data.caption_views(config, splits, splits.train) == {}
  tokens = splits.train.extras["tokens"]
  first, second = contrastive_data.step_tokens(config, kind, tokens, {})
  np.testing.assert_array_equal(first, tokens)
  np.testing.assert_array_equal(second, tokens)


def test_none_chain_is_the_identity():
  x = jnp.asarray(np.random.default_rng(0).random((4, 24, 24, 3)), jnp.float32)
  out = augment.augment_batch(jax.random.PRNGKey(0), x, **augment.chain("none"))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


@pytest.mark.parametrize("value", ["per_epoch", "", "Once"])
def test_bad_values_are_named(value):
  config = _config()
  with config.unlocked():
    config.contrastive.eda_captions = value
  with pytest.raises(ConfigError, match=f"config.contrastive.eda_captions={value!r}"):
    contrastive_config.validate(config, num_devices=1)


@pytest.mark.slow
def test_interrupted_run_with_fresh_captions_per_epoch_resumes_to_the_same_results(tmp_path,
                                                                                  monkeypatch):
  """The views of 'epoch' are seeded by the epoch, so a run stopped inside its last epoch (by
  SIGINT) and resumed sees the captions the uninterrupted run saw (results equal)."""
  import os
  import signal
  from robustdata import runner
  from robustdata.contrastive.trainer import train_and_evaluate_contrastive
  from robustdata.train import driver
  from robustdata.train import metrics as metrics_lib
  from tests.contrastive.test_contrastive_trainer import _tiny

  config = _tiny("roclip")
  with config.unlocked():
    config.contrastive.eda_captions = "epoch"
    config.contrastive.clip_warmup_epochs = 0
  full = train_and_evaluate_contrastive(config, str(tmp_path / "full"))
  append, count = metrics_lib.MetricsWindow.append, [0]

  def interrupt_before_the_last_step(self, metrics):  # inside the last (matching) epoch
    append(self, metrics)
    count[0] += 1
    if count[0] == full["steps"] - 1:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", interrupt_before_the_last_step)
  part_dir = str(tmp_path / "resumed")
  with pytest.raises(driver.Interrupted):
    train_and_evaluate_contrastive(config, part_dir)
  monkeypatch.setattr(metrics_lib.MetricsWindow, "append", append)
  resumed = train_and_evaluate_contrastive(config, part_dir)
  rows = runner.compare(json.loads(json.dumps(full)), json.loads(json.dumps(resumed)))
  assert rows and all(same for _, _, _, same in rows), [r for r in rows if not r[3]]
