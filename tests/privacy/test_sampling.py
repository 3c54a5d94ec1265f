"""Poisson sampling padded to a static size with a mask; fixed-size shuffling."""

import numpy as np

from robustdata.privacy import sampling


def test_poisson_padding_mask_and_rate():
  sampler = sampling.PoissonSampler(1000, sampling_rate=0.05, seed=0)
  assert 50 < sampler.max_batch_size < 1000
  sizes = []
  for _ in range(400):
    idx, mask = sampler.next_padded()
    assert idx.shape == mask.shape == (sampler.max_batch_size,)
    real = int(mask.sum())
    assert np.all(mask[:real] == 1) and np.all(mask[real:] == 0)
    assert np.all(idx[real:] == 0) and len(set(idx[:real])) == real
    sizes.append(real)
  # Binomial(1000, 0.05): mean 50, std ~6.9; the mean of 400 draws has std ~0.35.
  assert abs(np.mean(sizes) - 50) < 5 * np.sqrt(1000 * 0.05 * 0.95 / 400)


def test_poisson_resume_is_bitwise():
  a = sampling.PoissonSampler(200, sampling_rate=0.1, seed=3)
  a.next_batch()
  state = a.state_dict()
  first = a.next_batch()[0]
  b = sampling.PoissonSampler(200, sampling_rate=0.1, seed=99)
  b.load_state_dict(state)
  np.testing.assert_array_equal(b.next_batch()[0], first)


def test_shuffle_covers_each_example_once_per_epoch():
  sampler = sampling.ShuffleSampler(103, batch_size=10, seed=1)
  seen = np.concatenate([sampler.next_batch()[0] for _ in range(sampler.steps_per_epoch)])
  assert len(seen) == 100 and len(set(seen)) == 100
  idx, w = sampler.next_batch()
  assert len(idx) == 10 and np.all(w == 1)


def test_pad_indices():
  idx, mask = sampling.pad_indices(np.array([5, 7]), 4)
  np.testing.assert_array_equal(idx, [5, 7, 0, 0])
  np.testing.assert_array_equal(mask, [1, 1, 0, 0])
