"""RoCLIP's nearest-pool-caption matching lowers the backdoor attack at about the same
zero-shot accuracy, against its fair baseline: the same config without matching epochs
(`clip_warmup_epochs` past the last epoch, i.e. CLIP on RoCLIP's inputs: a fresh EDA caption
per pair each epoch, un-augmented images).

Measured at 16 poisons per attack (32 among 1,568 captioned_shapes pairs, 2%), pinned to one
core (WORKSPACE.md issue 6; seeds 0 / 1 / 2, no matching -> RoCLIP): backdoor ASR 0.35 / 0.29 /
0.32 -> 0.21 / 0.23 / 0.20 (at most 0.79x on every seed), zero-shot 0.80 / 0.84 / 0.89 -> 0.75
/ 0.84 / 0.91, targeted ASR 1.00 / 1.00 / 0.50 -> 0.50 / 0.50 / 0.75 (not asserted: lower on two
seeds of three). With the models' GroupNorm (`models.norm.group_norm`, nn.GroupNorm's numbers up
to float32 rounding) seeds 0 / 1 / 2 gave backdoor ASR 0.321 / 0.259 / 0.346 -> 0.247 / 0.215 /
0.178 (0.77x / 0.83x / 0.51x), zero-shot 0.77 / 0.84 / 0.88 -> 0.71 / 0.83 / 0.90.
Both runs happen in one single-threaded child (`tests/one_thread.py`; why: there),
~4.5 minutes, marked `longest` so an xdist worker starts with it (tests/conftest.py)."""

import pytest

from tests.one_thread import run_configs


@pytest.mark.slow
@pytest.mark.longest
def test_roclip_matching_lowers_the_backdoor_at_similar_zero_shot(tmp_path):
  overrides = {"seed": 0, "poison.count": 16}
  base, roclip = run_configs(
      [("configs.roclip.shapes", {**overrides, "contrastive.clip_warmup_epochs": 1000}),
       ("configs.roclip.shapes", overrides)], str(tmp_path))
  assert base["steps"] == roclip["steps"]
  # The comparison means something only if the baseline is attacked.
  assert base["backdoor_asr"] >= 0.2 and base["targeted_asr"] >= 0.5, base
  assert roclip["backdoor_asr"] <= 0.85 * base["backdoor_asr"], (roclip, base)
  assert roclip["zero_shot_accuracy"] >= base["zero_shot_accuracy"] - 0.1, (roclip, base)
