"""metrics.jsonl after a kill and a resume holds exactly what an uninterrupted run writes: cut
back to the checkpoint's byte offset (or, for older checkpoints, its step), a torn last line
dropped, a fresh run starting empty."""

import json
import os

import pytest

from robustdata.train.metrics import MetricsWriter


def _records(step: int) -> list[tuple[int, str, dict]]:
  """What a run writes at `step`: a train record, and a val record every third step."""
  out = [(step, "train", {"loss": 1.0 / step, "accuracy": step / 100})]
  if step % 3 == 0:
    out.append((step, "val", {"accuracy": step / 50}))
  return out


def _write(writer: MetricsWriter, steps) -> None:
  for step in steps:
    for s, split, metrics in _records(step):
      writer.write(s, split, metrics, epoch=s // 4)


def _read(run_dir) -> list[dict]:
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _uninterrupted(tmp_path, steps) -> bytes:
  run = tmp_path / "reference"
  run.mkdir()
  writer = MetricsWriter(str(run), tensorboard=False)
  _write(writer, steps)
  writer.close()
  return (run / "metrics.jsonl").read_bytes()


def test_offset_counts_committed_bytes(tmp_path):
  writer = MetricsWriter(str(tmp_path), tensorboard=False)
  assert writer.offset() == 0
  _write(writer, range(1, 7))
  writer.sync()
  assert writer.offset() == os.path.getsize(tmp_path / "metrics.jsonl")
  writer.close()
  assert [(r["step"], r["split"]) for r in _read(tmp_path)] == [
      (s, split) for step in range(1, 7) for s, split, _ in _records(step)]


@pytest.mark.parametrize("torn", [False, True])
def test_resume_truncates_to_checkpoint_offset(tmp_path, capsys, torn):
  run = tmp_path / "run"
  run.mkdir()
  writer = MetricsWriter(str(run), tensorboard=False)
  _write(writer, range(1, 7))
  offset = writer.offset()  # the checkpoint at step 6, after its val record
  _write(writer, range(7, 10))  # steps after the checkpoint, then the kill
  writer.close()
  if torn:
    with open(run / "metrics.jsonl", "ab") as f:
      f.write(b'{"step": 10, "split": "tra')
  resumed = MetricsWriter(str(run), resume_offset=offset, resume_step=6, tensorboard=False)
  assert resumed.offset() == offset
  _write(resumed, range(7, 13))
  resumed.close()
  assert (run / "metrics.jsonl").read_bytes() == _uninterrupted(tmp_path, range(1, 13))
  err = capsys.readouterr().err
  assert ("torn last line" in err) == torn and len(err.splitlines()) == int(torn)


def test_offset_drops_a_record_written_after_the_checkpoint_at_its_step(tmp_path):
  """A record written at the checkpoint's step but after the save (an epoch-end eval) is cut,
  so the resumed run writing it again leaves one copy."""
  run = tmp_path / "run"
  run.mkdir()
  writer = MetricsWriter(str(run), tensorboard=False)
  writer.write(5, "train", {"loss": 0.5})
  offset = writer.offset()
  writer.write(5, "val", {"accuracy": 0.9})
  writer.close()
  resumed = MetricsWriter(str(run), resume_offset=offset, resume_step=5, tensorboard=False)
  resumed.write(5, "val", {"accuracy": 0.9})
  resumed.close()
  assert [(r["step"], r["split"]) for r in _read(run)] == [(5, "train"), (5, "val")]


def test_legacy_resume_filters_by_step_and_drops_torn_line(tmp_path, capsys):
  run = tmp_path / "run"
  run.mkdir()
  writer = MetricsWriter(str(run), tensorboard=False)
  _write(writer, range(1, 9))
  writer.close()
  with open(run / "metrics.jsonl", "ab") as f:
    f.write(b'{"step": 9, "spl')
  resumed = MetricsWriter(str(run), resume_step=5, tensorboard=False)
  assert resumed.offset() == os.path.getsize(run / "metrics.jsonl")
  _write(resumed, range(6, 10))
  resumed.close()
  assert (run / "metrics.jsonl").read_bytes() == _uninterrupted(tmp_path, range(1, 10))
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and "torn last line" in err[0] and "metrics.jsonl" in err[0]


def test_fresh_run_empties_an_old_log(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 3, "split": "train"}\n{"step": 4, "sp')
  writer = MetricsWriter(str(tmp_path), tensorboard=False)
  assert writer.offset() == 0 and os.path.getsize(tmp_path / "metrics.jsonl") == 0
  _write(writer, [1])
  writer.close()
  assert [(r["step"], r["split"]) for r in _read(tmp_path)] == [(1, "train")]


def test_log_shorter_than_offset_is_kept_with_a_note(tmp_path, capsys):
  (tmp_path / "metrics.jsonl").write_text('{"split": "train", "step": 1}\n')
  writer = MetricsWriter(str(tmp_path), resume_offset=500, resume_step=4, tensorboard=False)
  assert writer.offset() == len('{"split": "train", "step": 1}\n')
  writer.close()
  assert "fewer than the 500" in capsys.readouterr().err


def test_each_record_is_one_write(tmp_path, monkeypatch):
  writer = MetricsWriter(str(tmp_path), tensorboard=False)
  calls = []
  real = os.write
  monkeypatch.setattr(os, "write", lambda fd, data: calls.append(bytes(data)) or real(fd, data))
  writer.write(1, "train", {"loss": 0.25, "per_class": [0.5, 0.75]}, epoch=0)
  writer.close()
  assert len(calls) == 1 and calls[0].endswith(b"\n")
  assert json.loads(calls[0]) == {"step": 1, "split": "train", "loss": 0.25,
                                  "per_class": [0.5, 0.75], "epoch": 0}
