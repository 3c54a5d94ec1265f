"""The progress line's rate and ETA follow the recent steps, not the average since the start
(a first step that spends 50 s compiling must not skew the rest of the run)."""

from robustdata.train import metrics


def test_rate_is_over_recent_updates():
  progress = metrics.Progress(total_steps=200, initial=0, mode="none")
  t0 = 1000.0
  progress._recent.clear()
  progress._recent.append((t0, 0))
  assert progress.steps_per_sec(1, t0 + 50.0) == 1 / 50.0  # the compile-bound first step
  for k in range(2, 3 + metrics.RECENT_UPDATES):
    rate = progress.steps_per_sec(10 * k, t0 + 50.0 + k)  # then 10 steps per second
  assert rate == 10.0
  since_start = (10 * (1 + metrics.RECENT_UPDATES)) / (50.0 + 1 + metrics.RECENT_UPDATES)
  assert since_start < 1.5  # what the old average reported
