"""SafeCLIP does what its paper says on data where the effect is visible: at 16 poisons per
attack (32 poisons among 1,568 captioned_shapes pairs, 2%) plain CLIP is attacked and
SafeCLIP, with the same data, model and epochs, keeps its last safe set nearly free of poisons
and lowers both attack success rates at about the same zero-shot accuracy.

Measured with these configs pinned to one core (WORKSPACE.md issue 6, "16 poisons per attack";
seeds 0 / 1 / 2, CLIP -> SafeCLIP): targeted ASR 1.00 / 0.50 / 0.50 -> 0.00 / 0.25 / 0.25,
backdoor ASR 0.32 / 0.25 / 0.39 -> 0.13 / 0.04 / 0.07, zero-shot 0.62 / 0.72 / 0.85 -> 0.62 /
0.68 / 0.80, poisons in the last safe set 11 / 3 / 7 of 32 in 1,332 pairs (base rate 2%).

Both runs happen in one child process on one CPU (`one_thread.py`): the same seed-0 pair
run by `pytest -n 2` in the worker's process, with its thread count, gave backdoor ASR 0.306 ->
0.249, so a bound tuned on one-core runs is not a bound on other thread counts. One thread
makes the test reproduce the measured seed-0 runs on this machine type; the bounds are still
looser than all three measured seeds (and than the two-core run, where CLIP was attacked at
0.306 and SafeCLIP's targeted and backdoor ASR were lower). Two full runs, ~5-8 minutes, so it
runs only with ROBUSTDATA_EFFECT_TESTS=1 (`one_thread.py`: with both effect tests the suite
exceeded its 15-minute budget)."""

import pytest

from tests.contrastive.one_thread import effect_test, run_shapes_configs


@pytest.mark.slow
@effect_test
def test_safeclip_lowers_both_attacks_at_similar_zero_shot(tmp_path):
  overrides = {"seed": 0, "poison.count": 16}
  clip, safe = run_shapes_configs([("configs.clip.shapes", overrides),
                                   ("configs.safeclip.shapes", overrides)], str(tmp_path))
  # The comparison means something only if plain CLIP is attacked.
  assert clip["targeted_asr"] >= 0.5 and clip["backdoor_asr"] >= 0.2, clip
  assert safe["targeted_asr"] < clip["targeted_asr"], (safe, clip)
  assert safe["backdoor_asr"] < clip["backdoor_asr"], (safe, clip)
  assert safe["zero_shot_accuracy"] >= clip["zero_shot_accuracy"] - 0.1, (safe, clip)
  # The mechanism: the last split's safe set holds poisons well below their base rate.
  last = safe["safeclip_splits"][-1]
  base_rate = safe["poison_ratio"]  # poisons / training pairs
  assert last["poisons_in_safe"] / last["safe_count"] < 0.75 * base_rate, last
