"""Friendly Noise does what its paper says on data where the effect is visible: against Sleeper
Agent on the captioned shapes (configs/friendly_noise/sa_shapes.py: 160 poisons of class 0 at
eps = 16/255 whose training gradient matches that of class-1 images stamped with a checkerboard
and labelled 0; the victim trains from scratch), a victim trained with friendly + random noise
classifies far fewer triggered class-1 test images as class 0 than the undefended one, at a
cost in clean accuracy.

Cut to fit CI: the substitute trains 10 epochs (20 in the config), crafting is 50 iterations
without retraining the substitute (250 with a retraining every 50), Friendly Noise optimises 10
iterations per batch (30). Measured on one core, trial 0, victim seed 0 (the test): backdoor ASR
0.45 undefended, 0.13 with friendly + random noise, clean accuracy 0.816 -> 0.725. With 100
crafting iterations (victim seeds 0 / 1): 0.47 / 0.28 undefended, 0.17 / 0.08 defended, 0.03
for the clean control (seed 0), accuracy 0.813 / 0.826 -> 0.741 / 0.745. The config's settings
over 3 trials x 3 seeds (docs/results/poisoning.md): 0.44 -> 0.08. The stages run one after
another in one single-threaded child (`tests/one_thread.py`; why: there), ~3 minutes, marked
`longest` so an xdist worker starts with it (tests/conftest.py)."""

import pytest

from tests.one_thread import run_configs

SA = "configs.friendly_noise.sa_shapes"
LITE = {"poisons.substitute.train.epochs": 10, "poisons.attack.iterations": 50,
        "poisons.attack.retrain_every": 0}


@pytest.mark.slow
@pytest.mark.longest
def test_friendly_noise_stops_most_of_the_sleeper_agent_backdoor(tmp_path):
  none, defended = run_configs(
      [(f"{SA}:none,trial0", LITE),
       (f"{SA}:friendly_random,trial0", {**LITE, "friendly.iterations": 10})], str(tmp_path))
  assert none["poisons_applied"] and defended["poisons_applied"]
  assert none["poison_count"] == defended["poison_count"] == 160
  assert defended["friendly_time_s"] > 0 and defended["friendly_mean_abs"] > 0
  # The comparison means something only if the undefended victim is attacked.
  assert none["backdoor_asr"] >= 0.25, none
  assert defended["backdoor_asr"] <= 0.5 * none["backdoor_asr"], (defended, none)
  # The paper's "slight" drop is ~8 points here (docs/results/poisoning.md): bound it.
  assert defended["test_accuracy"] >= none["test_accuracy"] - 0.15, (defended, none)
