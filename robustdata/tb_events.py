"""A dependency-free TensorBoard event-file writer for scalar summaries.

Writes `events.out.tfevents.<time>.<host>` files: TFRecord framing (length, masked CRC32C of
the length, payload, masked CRC32C of the payload) around hand-encoded `Event` protobufs, so
logging scalars imports neither protobuf, tensorboardX nor torch.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Optional

FILE_VERSION = "brain.Event:2"
MAX_PENDING = 256  # buffered records are written to the file (without fsync) past this many
_SESSION_START = 1  # SessionLog.SessionStatus.START


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`, as TFRecord uses."""
  crc, table = 0xFFFFFFFF, _CRC32C_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The rotated-and-offset CRC32C that TFRecord stores, so CRCs of CRCs stay well spread."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
  """`payload` framed as one TFRecord: uint64 length, its masked CRC, payload, payload CRC."""
  length = struct.pack("<Q", len(payload))
  return (length + struct.pack("<I", masked_crc32c(length)) + payload
          + struct.pack("<I", masked_crc32c(payload)))


def _varint(value: int) -> bytes:
  value &= 0xFFFFFFFFFFFFFFFF  # int64: negative values take ten bytes, two's complement
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _float32(value: float) -> bytes:
  try:
    return struct.pack("<f", value)
  except OverflowError:  # beyond float32's range: infinity, as a float32 cast gives
    return struct.pack("<f", value * float("inf"))


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field (wire type 2): a string or a nested message."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(*, wall_time: float, step: int = 0, file_version: Optional[str] = None,
                 scalar: Optional[tuple[str, float]] = None, session_start: bool = False) -> bytes:
  """A serialized `Event` (wall_time=1, step=2, then one of file_version=3, summary=5 holding one
  `Summary.Value(tag=1, simple_value=2)`, session_log=7), fields in field-number order."""
  out = b"\x09" + struct.pack("<d", wall_time)
  if step:
    out += b"\x10" + _varint(step)
  if file_version is not None:
    out += _field(3, file_version.encode())
  if scalar is not None:
    tag, value = scalar
    value_msg = _field(1, tag.encode()) + b"\x15" + _float32(value)
    out += _field(5, _field(1, value_msg))
  if session_start:
    out += _field(7, b"\x08" + _varint(_SESSION_START))
  return out


class EventWriter:
  """Writes scalars to one TensorBoard event file in `logdir`, buffered until `flush()`.

  With `purge_step`, a SessionLog START at that step follows the file-version event: TensorBoard
  then drops events at steps >= `purge_step` from earlier files, those of the run before a resume.
  """

  def __init__(self, logdir: str, *, purge_step: Optional[int] = None):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    self.path = os.path.join(logdir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}")
    # Appending: a writer reopened within the same second continues the file, never clobbers it.
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    self._pending = [tfrecord(encode_event(wall_time=now, file_version=FILE_VERSION))]
    if purge_step is not None:
      self._pending.append(tfrecord(encode_event(wall_time=now, step=purge_step,
                                                 session_start=True)))

  def add_scalar(self, tag: str, value: float, step: int) -> None:
    """Queues `tag` = `value` (stored as float32) at `step`."""
    self._pending.append(tfrecord(encode_event(wall_time=time.time(), step=int(step),
                                               scalar=(tag, float(value)))))
    if len(self._pending) >= MAX_PENDING:
      self._write()

  def _write(self) -> None:
    if self._fd < 0:
      raise ValueError(f"{self.path} is closed")
    data, self._pending = b"".join(self._pending), []
    view = memoryview(data)
    while view:  # a short write (e.g. the disk filled): finish or raise
      view = view[os.write(self._fd, view):]

  def flush(self) -> None:
    """Writes the queued records and makes the file durable."""
    self._write()
    os.fsync(self._fd)

  def close(self) -> None:
    """Flushes and closes the file; further calls do nothing."""
    if self._fd >= 0:
      self.flush()
      os.close(self._fd)
      self._fd = -1
