"""Accounting against dp_accounting directly, monotonicity, calibration and bad inputs."""

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from robustdata.privacy import accounting, checks, register, rules
from robustdata.registry import ConfigError


def test_epsilon_matches_dp_accounting():
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.1)), 1000)
  for name, acc in [("rdp", rdp.RdpAccountant(list(accounting.RDP_ORDERS))),
                    ("pld", pld.PLDAccountant())]:
    acc.compose(event)
    ours = accounting.epsilon(noise_multiplier=1.1, sampling_rate=0.01, steps=1000, delta=1e-5,
                              accountant=name)
    # (PLD composes 1000 steps once here; calibration below uses fewer steps to stay fast.)
    assert ours == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_epsilon_monotone():
  eps = lambda s, t: accounting.epsilon(noise_multiplier=s, sampling_rate=0.02, steps=t,
                                        delta=1e-5)
  steps = [eps(1.0, t) for t in (10, 100, 1000)]
  assert steps[0] < steps[1] < steps[2]
  sigmas = [eps(s, 200) for s in (2.0, 1.0, 0.7)]
  assert sigmas[0] < sigmas[1] < sigmas[2]
  shuffle = accounting.epsilon(noise_multiplier=1.0, sampling_rate=0.02, steps=100, delta=1e-5,
                               sampling="shuffle", dataset_size=5000)
  assert 0 < shuffle < float("inf")


@pytest.mark.parametrize("name,steps", [
    ("rdp", 500), pytest.param("pld", 20, marks=pytest.mark.slow)])  # PLD: ~20 s
def test_calibration_hits_target(name, steps):
  sigma = accounting.calibrate_noise_multiplier(target_epsilon=2.0, sampling_rate=0.05,
                                                steps=steps, delta=1e-5, accountant=name)
  eps = accounting.epsilon(noise_multiplier=sigma, sampling_rate=0.05, steps=steps,
                           delta=1e-5, accountant=name)
  assert eps <= 2.0 + 1e-6 and eps == pytest.approx(2.0, rel=2e-2)


def test_bad_inputs_raise_config_error_naming_the_field():
  cases = [
      (lambda: rules.make_dp_rule(mode="dp_sgd", clip_norm=-1.0, noise_multiplier=1.0,
                                  expected_batch_size=8), "config.privacy.clip_norm=-1.0"),
      (lambda: rules.make_dp_rule(mode="dp_sgd", clip_norm=0.0, noise_multiplier=1.0,
                                  expected_batch_size=8), "config.privacy.clip_norm=0.0"),
      (lambda: rules.make_dp_rule(mode="dp_sgd", clip_norm=1.0, noise_multiplier=-0.5,
                                  expected_batch_size=8), "config.privacy.noise_multiplier"),
      (lambda: rules.make_dp_rule(mode="dpsgd", clip_norm=1.0, noise_multiplier=1.0,
                                  expected_batch_size=8), "config.privacy.mode"),
      (lambda: accounting.calibrate_noise_multiplier(
          target_epsilon=1e-4, sampling_rate=0.5, steps=10_000, delta=1e-5),
       "config.privacy.target_epsilon"),
      (lambda: accounting.epsilon(noise_multiplier=1.0, sampling_rate=0.1, steps=10,
                                  delta=1e-3, dataset_size=1000), "config.privacy.delta"),
      (lambda: accounting.epsilon(noise_multiplier=1.0, sampling_rate=1.5, steps=10,
                                  delta=1e-5), "sampling rate"),
      (lambda: register.build_dp_sgd({"clip_norm": 1.0, "delta": 0.01},
                                     expected_batch_size=10, dataset_size=100),
       "config.privacy.delta"),
      (lambda: register.build_dp_sgd({"clip_norm": 1.0}, expected_batch_size=200,
                                     dataset_size=100), "sampling rate"),
      (lambda: checks.check_no_batchnorm({"batch_stats": {"bn": {"mean": [0.0]}}}),
       "config.model.norm"),
  ]
  for fn, needle in cases:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
      fn()


def test_builders_are_registered():
  from robustdata.registry import GRAD_RULES
  assert GRAD_RULES._entries["dp_sgd"] is register.build_dp_sgd  # pylint: disable=protected-access
  rule = register.build_clip_only({"clip_norm": 1.0, "clipping": "ghost"},
                                  expected_batch_size=10, dataset_size=1000)
  assert callable(rule)
  assert register.resolve_noise_multiplier({"target_epsilon": 3.0, "delta": 1e-5},
                                           sampling_rate=0.01, steps=300,
                                           dataset_size=1000) > 0
  assert rules.mode_for_epoch(4, mode="dp_sgd", switch_epoch=5, switch_to_mode="sgd") == "dp_sgd"
  assert rules.mode_for_epoch(5, mode="dp_sgd", switch_epoch=5, switch_to_mode="sgd") == "sgd"
