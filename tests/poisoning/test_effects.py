"""Clean-label poisoning and Friendly Noise do what their papers say on data where the effects
are visible (the captioned shapes as a 16-class task, 24x24 RGB, 160 poisons of class 0 at
eps = 16/255):

- Sleeper Agent (configs/friendly_noise/sa_shapes.py): poisons whose training gradient matches
  that of class-1 images stamped with a checkerboard and labelled 0; the victim trains from
  scratch. A victim trained with friendly + random noise classifies far fewer triggered class-1
  test images as class 0 than the undefended one, at a cost in clean accuracy.
- The Hidden Trigger Backdoor (configs/friendly_noise/htb_shapes.py): poisons that collide in
  the substitute's feature space with patched images of trial 0's source class (its target's,
  class 5); the victim trains a new last layer on the frozen extractor. Most triggered test
  images of that class go to class 0, while a victim trained on the same data without the
  poisons is not fooled by the trigger.

Both attacks craft against the same substitute (common.substitute_config), so the stages run
one after another in one single-threaded child (`tests/one_thread.py`; why: there) and the
substitute trains once. Cut to fit CI: the substitute trains 10 epochs (20 in the configs);
Sleeper Agent crafts 50 iterations without retraining the substitute (250 with a retraining
every 50) and Friendly Noise optimises 10 iterations per batch (30); the Hidden Trigger Backdoor
crafts 300 steps (5,000) and its victims train 5 epochs (10).

Measured on one core, trial 0, victim seed 0 (these settings):
- Sleeper Agent: backdoor ASR 0.45 undefended, 0.13 with friendly + random noise, clean accuracy
  0.816 -> 0.725. With 100 crafting iterations (victim seeds 0 / 1): 0.47 / 0.28 undefended,
  0.17 / 0.08 defended, 0.03 for the clean control (seed 0). The config's settings over 3
  trials x 3 seeds (docs/results/poisoning.md): 0.44 -> 0.08.
- Hidden Trigger Backdoor: backdoor ASR 0.95 poisoned, 0.00 clean (clean accuracy 0.773 /
  0.782); with the config's settings 0.92 and 0.00, with 300 steps 0.90 (docs/results/
  poisoning.md has the table over trials, seeds and defences).
~4 minutes, marked `longest` so an xdist worker starts with it (tests/conftest.py)."""

import pytest

from tests.one_thread import run_configs

SA = "configs.friendly_noise.sa_shapes"
HTB = "configs.friendly_noise.htb_shapes"
SUBSTITUTE = {"poisons.substitute.train.epochs": 10}
SA_LITE = {**SUBSTITUTE, "poisons.attack.iterations": 50, "poisons.attack.retrain_every": 0}
HTB_LITE = {**SUBSTITUTE, "poisons.attack.iterations": 300, "train.epochs": 5}


@pytest.mark.slow
@pytest.mark.longest
def test_sleeper_agent_and_htb_take_and_friendly_noise_stops_most_of_sleeper_agent(tmp_path):
  none, defended, htb, clean = run_configs(
      [(f"{SA}:none,trial0", SA_LITE),
       (f"{SA}:friendly_random,trial0", {**SA_LITE, "friendly.iterations": 10}),
       (f"{HTB}:none,trial0", HTB_LITE),
       (f"{HTB}:clean,trial0", HTB_LITE)],  # the same substitute and poisons, unused
      str(tmp_path))
  # Sleeper Agent and Friendly Noise.
  assert none["poisons_applied"] and defended["poisons_applied"]
  assert none["poison_count"] == defended["poison_count"] == 160
  assert defended["friendly_time_s"] > 0 and defended["friendly_mean_abs"] > 0
  # The comparison means something only if the undefended victim is attacked.
  assert none["backdoor_asr"] >= 0.25, none
  assert defended["backdoor_asr"] <= 0.5 * none["backdoor_asr"], (defended, none)
  # The paper's "slight" drop is ~8 points here (docs/results/poisoning.md): bound it.
  assert defended["test_accuracy"] >= none["test_accuracy"] - 0.15, (defended, none)

  # The Hidden Trigger Backdoor, against the clean control.
  assert htb["poisons_applied"] and not clean["poisons_applied"]
  assert htb["poison_count"] == clean["poison_count"] == 160
  assert htb["backdoor_test_images"] == clean["backdoor_test_images"] > 40
  assert htb["backdoor_asr"] >= 0.5, htb
  assert clean["backdoor_asr"] <= 0.1, clean
  # The poisons cost the victim little clean accuracy: the attack is hidden.
  assert htb["test_accuracy"] >= clean["test_accuracy"] - 0.05, (htb, clean)
