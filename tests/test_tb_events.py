"""The TensorBoard event writer: CRC32C against published vectors and a bitwise reference, and
event files read back with an independent TFRecord parser and tensorboardX's compiled protobuf
classes (byte-identical re-serialization, file version, purge START, tags, steps, values)."""

from __future__ import annotations

import glob
import os
import struct
import time

import numpy as np
import pytest
from tensorboardX.proto import event_pb2, summary_pb2

from robustdata import tb_events
from robustdata.tb_events import EventWriter
from robustdata.train.metrics import MetricsWriter
from tests.conftest import run_python


def _bitwise_crc32c(data: bytes) -> int:
  """CRC32C one bit at a time (no table): the reference for the table-driven version."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
  return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def _read_events(path: str) -> list[event_pb2.Event]:
  """Parses TFRecord framing, checks both CRCs of every record, decodes each Event."""
  with open(path, "rb") as f:
    data = f.read()
  events, pos = [], 0
  while pos < len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
    assert header_crc == _masked(_bitwise_crc32c(header))
    payload = data[pos + 12:pos + 12 + length]
    assert len(payload) == length
    (payload_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
    assert payload_crc == _masked(_bitwise_crc32c(payload))
    event = event_pb2.Event()
    event.ParseFromString(payload)
    assert event.SerializeToString() == payload  # the canonical protobuf encoding
    events.append(event)
    pos += 16 + length
  assert pos == len(data)
  return events


def _scalars(events) -> list[tuple[str, int, float]]:
  out = []
  for e in events:
    if e.HasField("summary"):
      assert len(e.summary.value) == 1
      out.append((e.summary.value[0].tag, e.step, e.summary.value[0].simple_value))
  return out


def _starts(events) -> list[int]:
  return [e.step for e in events
          if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START]


def test_crc32c_known_vectors():
  assert tb_events.crc32c(b"123456789") == 0xE3069283
  assert tb_events.crc32c(bytes(32)) == 0x8A9136AA
  assert tb_events.crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720, B.4
  assert tb_events.crc32c(bytes(range(32))) == 0x46DD794E
  assert tb_events.crc32c(b"") == 0


def test_crc32c_matches_bitwise_reference():
  rng = np.random.default_rng(0)
  for n in [1, 3, 8, 17, 64, 255, 1000]:
    data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    assert tb_events.crc32c(data) == _bitwise_crc32c(data)
    assert tb_events.masked_crc32c(data) == _masked(_bitwise_crc32c(data))


def test_event_writer_round_trip(tmp_path):
  scalars = [("train/loss", 1, 0.1), ("train/loss", 2, -2.5), ("val/accuracy", 2, 1e-30),
             ("train/größe", 3, 123456.789), ("train/loss", 2**40 + 3, 1e40), ("x", 7, 0.0),
             ("x", 8, -3.4028235e38)]
  t0 = time.time()
  writer = EventWriter(str(tmp_path / "tb"), purge_step=5)
  for tag, step, value in scalars:
    writer.add_scalar(tag, value, step)
  [path] = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
  assert os.path.getsize(path) == 0  # buffered until flush
  writer.flush()
  assert os.path.getsize(path) > 0
  writer.close()
  writer.close()  # a second close does nothing
  t1 = time.time()
  name = os.path.basename(path).split(".")
  assert name[:3] == ["events", "out", "tfevents"] and int(t0) <= int(name[3]) <= t1

  events = _read_events(path)
  assert events[0].file_version == "brain.Event:2" and events[0].step == 0
  assert [e.file_version for e in events[1:]] == [""] * (len(events) - 1)
  assert events[1].step == 5 and _starts(events) == [5] and not events[1].HasField("summary")
  assert all(t0 <= e.wall_time <= t1 for e in events)
  got = _scalars(events)
  assert [(tag, step) for tag, step, _ in got] == [(tag, step) for tag, step, _ in scalars]
  with np.errstate(over="ignore"):  # 1e40 -> inf, as a float32 cast gives
    want = np.array([v for _, _, v in scalars], np.float64).astype(np.float32)
  np.testing.assert_array_equal(np.array([v for _, _, v in got], np.float32), want)


def test_event_matches_protobuf_encoding():
  """Each hand-encoded message equals protobuf's serialization of the same Event."""
  ref = event_pb2.Event(wall_time=1.5e9, step=-3, summary=summary_pb2.Summary(
      value=[summary_pb2.Summary.Value(tag="a/b", simple_value=0.25)]))
  assert tb_events.encode_event(wall_time=1.5e9, step=-3, scalar=("a/b", 0.25)) == \
      ref.SerializeToString()
  ref = event_pb2.Event(wall_time=2.0, step=300,
                        session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
  assert tb_events.encode_event(wall_time=2.0, step=300, session_start=True) == \
      ref.SerializeToString()


def test_no_purge_step_and_auto_write(tmp_path):
  writer = EventWriter(str(tmp_path))
  n = tb_events.MAX_PENDING + 10
  for step in range(n):
    writer.add_scalar("loss", step / 7, step)
  [path] = glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert os.path.getsize(path) > 0  # past MAX_PENDING records the buffer is written out
  writer.close()
  events = _read_events(path)
  assert _starts(events) == [] and len(events) == n + 1
  np.testing.assert_array_equal([v for _, _, v in _scalars(events)],
                                (np.arange(n) / 7).astype(np.float32))


def test_reopen_in_the_same_second_appends(tmp_path, monkeypatch):
  monkeypatch.setattr(tb_events.time, "time", lambda: 1.7e9)
  for purge, steps in [(1, [1, 2, 3]), (3, [3, 4])]:
    writer = EventWriter(str(tmp_path), purge_step=purge)
    for step in steps:
      writer.add_scalar("loss", step, step)
    writer.close()
  [path] = glob.glob(str(tmp_path / "*"))
  events = _read_events(path)
  assert [bool(e.file_version) for e in events].count(True) == 2 and _starts(events) == [1, 3]
  assert [s for _, s, _ in _scalars(events)] == [1, 2, 3, 3, 4]


def test_metrics_writer_event_file(tmp_path):
  """A run to step 6, then a resume at step 3: scalars only (non-finite and lists skipped), and
  a purge START at resume_step + 1 after each file-version event."""
  writer = MetricsWriter(str(tmp_path))
  for step in range(1, 7):
    writer.write(step, "train", {"loss": 1 / step, "nan": float("nan"), "hist": [1.0, 2.0]})
  writer.write(6, "val", {"accuracy": np.float32(0.75), "count": np.int64(9)})
  writer.sync()
  writer.close()
  resumed = MetricsWriter(str(tmp_path), resume_step=3)
  resumed.write(4, "train", {"loss": 0.2})
  resumed.close()
  paths = sorted(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*")))
  events = [e for p in paths for e in _read_events(p)]
  assert [e.file_version for e in events if e.file_version] == ["brain.Event:2"] * 2
  assert _starts(events) == [1, 4]
  want = ([("train/loss", s, 1 / s) for s in range(1, 7)]
          + [("val/accuracy", 6, 0.75), ("val/count", 6, 9.0), ("train/loss", 4, 0.2)])
  got = _scalars(events)
  assert [(t, s) for t, s, _ in got] == [(t, s) for t, s, _ in want]
  np.testing.assert_array_equal([v for _, _, v in got],
                                np.array([v for _, _, v in want]).astype(np.float32))


def test_metrics_import_loads_neither_tensorboardx_nor_torch(tmp_path):
  proc = run_python(
      "import sys, robustdata.train.metrics as m\n"
      f"w = m.MetricsWriter({str(tmp_path)!r}); w.write(1, 'train', {{'loss': 0.5}}); w.close()\n"
      "print(sorted(k for k in ('tensorboardX', 'torch') if k in sys.modules))")
  assert proc.stdout.splitlines()[-1] == "[]"
  assert len(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))) == 1
