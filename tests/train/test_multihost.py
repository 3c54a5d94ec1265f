"""The multi-process pieces that run in one process: each process's rows of a batch, the batch
checks, process-0-only actions and the silent writer of the other processes. The two-process
runs themselves are tests/test_multiprocess.py."""

import os

import jax
import ml_collections
import numpy as np
import pytest

from robustdata import run_dir as run_dir_lib
from robustdata.data.dataset import Dataset
from robustdata.data.loader import BatchLoader
from robustdata.registry import ConfigError
from robustdata.train import metrics as metrics_lib
from robustdata.train import sharding as sharding_lib


def _reference_batch(data, indices, weights, batch_size):
  """The padded batch row by row: row i is indices[i], then indices[(i - n) % n] with mask 0."""
  n, rows = len(indices), []
  for i in range(batch_size):
    j = indices[i] if i < n else indices[(i - n) % n]
    rows.append((j, float(i < n), float(weights[i]) if i < n else 0.0))
  index = np.array([r[0] for r in rows])
  return {"x": data.x[index], "y": data.y[index], "index": index, "groups": data.groups[index],
          "mask": np.array([r[1] for r in rows]), "weight": np.array([r[2] for r in rows])}


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_each_process_reads_only_its_rows_and_together_they_make_the_batch(processes):
  rng = np.random.default_rng(0)
  data = Dataset(x=rng.normal(size=(30, 3)).astype(np.float32), y=np.arange(30) % 4,
                 ids=np.arange(30), groups=np.arange(30) % 3)
  read = []

  class CountingX(np.ndarray):
    def __getitem__(self, key):
      read.append(np.asarray(key).copy())
      return np.asarray(self).__getitem__(key)

  data = data.replace(x=data.x.view(CountingX))
  loader = BatchLoader(data, batch_size=16, sharding=None, with_groups=True)
  indices, weights = rng.permutation(30)[:11], rng.uniform(0.5, 2, 11).astype(np.float32)
  want = _reference_batch(data, indices, weights, 16)
  per = 16 // processes
  parts = []
  for p in range(processes):
    read.clear()
    part = loader.host_batch(indices, weights, rows=slice(p * per, (p + 1) * per))
    assert [len(r) for r in read] == [per]  # this process gathered only its own rows
    parts.append(part)
  for key, expected in want.items():
    got = np.concatenate([np.asarray(part[key]) for part in parts])
    np.testing.assert_array_equal(got, expected, err_msg=key)


class _FakeSharding:
  """A batch sharding whose addressable devices hold the given row spans."""

  def __init__(self, spans):
    self.spans = spans

  def addressable_devices_indices_map(self, shape):
    return {d: (slice(a, b),) for d, (a, b) in enumerate(self.spans)}


def test_process_rows_is_the_contiguous_block_of_the_local_devices(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert sharding_lib.process_rows(_FakeSharding([(16, 20), (20, 24), (24, 28), (28, 32)]),
                                   32) == slice(16, 32)
  with pytest.raises(ValueError, match="not one contiguous block"):
    sharding_lib.process_rows(_FakeSharding([(0, 4), (8, 12)]), 32)


def test_a_batch_not_divisible_by_the_processes_names_the_field(monkeypatch):
  train = ml_collections.ConfigDict({"batch_size": 64, "eval_batch_size": 96})
  sharding_lib.check_batch_fields(train)  # one process: anything goes
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  monkeypatch.setattr(jax, "device_count", lambda: 12)
  with pytest.raises(ConfigError, match=r"config\.train\.batch_size=64 is not divisible by the "
                     r"number of processes \(3\); allowed values: multiples of 12"):
    sharding_lib.check_batch_fields(train)
  train.batch_size = 48
  sharding_lib.check_batch_fields(train)  # 96 and 48 split over 3


def test_only_process_zero_acts_and_the_others_learn_its_outcome(monkeypatch, tmp_path):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  told = []
  monkeypatch.setattr(sharding_lib, "primary_succeeded", lambda ok: told.append(ok) or ok)
  calls = []
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  run_dir_lib.on_primary(lambda: calls.append(1), what="write x")
  assert calls == [] and told == [True]  # process 1 never acts; it hears process 0's outcome
  monkeypatch.setattr(sharding_lib, "primary_succeeded", lambda ok: False)
  with pytest.raises(run_dir_lib.RunDirError, match="process 0 could not write x"):
    run_dir_lib.on_primary(lambda: calls.append(1), what="write x")
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  told.clear()
  monkeypatch.setattr(sharding_lib, "primary_succeeded", lambda ok: told.append(ok) or ok)

  def fail():
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):  # told the others first, then raised
    run_dir_lib.on_primary(fail, what="write y")
  assert told == [False]
  run_dir_lib.write_results(str(tmp_path), {"a": 1})
  assert os.listdir(tmp_path) == ["results.json"]


def test_the_other_processes_writer_writes_nothing(tmp_path):
  writer = metrics_lib.NullWriter(str(tmp_path), resume_offset=123, resume_step=7)
  writer.write(8, "train", {"loss": 1.0})
  writer.sync()
  writer.close()
  assert writer.offset() == 123 and os.listdir(tmp_path) == []


def test_agreement_helpers_are_identities_in_one_process():
  assert sharding_lib.max_over_processes(15) == 15 and sharding_lib.max_over_processes(0) == 0
  assert sharding_lib.primary_succeeded(True) and not sharding_lib.primary_succeeded(False)
  assert sharding_lib.is_primary()
