"""The spool's on-disk format, with no I/O: entries to bytes and bytes back, damage found and skipped.

A segment file is a header (``IWSPOOL1``) followed by entries. Each entry is::

    marker   2 bytes  0xB5 0x1D
    length   4 bytes  big-endian, of the payload
    crc      4 bytes  big-endian CRC-32 of the payload
    payload  length bytes

and the payload is one Kafka message with its spool offset and what the metrics need::

    offset u64, received_us i64, event_us i64 (or -1), stream u8 (0 none, 1 trade, 2 depth, 3 kline),
    topic (u16 length + UTF-8), business (u16 length + UTF-8, 0xFFFF for none),
    key (i32 length + bytes, -1 for none), value (u32 length + bytes),
    headers (u16 count, then each: u16 name length + name, u32 value length + value)

Reading (:func:`scan`) never raises for bad bytes. An entry whose CRC does not match is
reported as :class:`Damage` and skipped; the scan then looks for the next marker whose entry
checks out, so one flipped byte costs one entry, never the rest of the file. A last entry cut
short (a write torn by a crash) is reported with ``torn=True``. The scan checks CRCs and reads
offsets only; :func:`decode_payload` builds the message when it is needed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bridge.records import EPOCH, Stream, epoch_micros
from bridge.serialize import KafkaMessage

SEGMENT_HEADER = b"IWSPOOL1"
MARKER = b"\xb5\x1d"
_FRAME = struct.Struct(">2sII")
FRAME_BYTES = _FRAME.size
_FIXED = struct.Struct(">QqqB")
_OFFSET = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_NONE_TEXT = 0xFFFF
MAX_ENTRY_BYTES = 64 << 20
"""No entry is this large (a Kafka record is at most a few MiB): a larger length is damage."""

_STREAMS = (None, Stream.TRADE, Stream.DEPTH, Stream.KLINE)
_STREAM_CODE = {stream: code for code, stream in enumerate(_STREAMS)}
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Frame:
    """One good entry in a segment: where it starts, its size on disk, and its spool offset (receipt order)."""

    position: int
    size: int
    offset: int


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes at ``position`` that are not a good entry; ``torn`` when they are a cut-short last entry."""

    position: int
    length: int
    torn: bool


def encode_entry(offset: int, message: KafkaMessage) -> bytes:
    """The framed bytes of one entry."""
    event_us = -1 if message.event_time is None else epoch_micros(message.event_time)
    key, value = message.key, message.value
    payload = b"".join(
        (
            _FIXED.pack(offset, epoch_micros(message.received_time), event_us, _STREAM_CODE[message.stream]),
            _text(message.topic),
            _NONE_TEXT_BYTES if message.business is None else _text(message.business),
            _I32.pack(-1) if key is None else _I32.pack(len(key)) + key,
            _U32.pack(len(value)),
            value,
            _headers(message.headers),
        )
    )
    return _FRAME.pack(MARKER, len(payload), zlib.crc32(payload)) + payload


_NONE_TEXT_BYTES = _NONE_TEXT.to_bytes(2, "big")
_ENCODED: dict[Any, bytes] = {}
_ENCODED_MAX = 4096
"""Topics, businesses and header sets repeat on every record: their encodings are kept (cleared when full)."""


def _text(value: str) -> bytes:
    encoded = _ENCODED.get(value)
    if encoded is None:
        raw = value.encode()
        encoded = _remember(value, _U16.pack(len(raw)) + raw)
    return encoded


def _headers(headers: tuple[tuple[str, bytes], ...]) -> bytes:
    encoded = _ENCODED.get(headers)
    if encoded is None:
        parts = [_U16.pack(len(headers))]
        for name, value in headers:
            raw = name.encode()
            parts += (_U16.pack(len(raw)), raw, _U32.pack(len(value)), value)
        encoded = _remember(headers, b"".join(parts))
    return encoded


def _remember(key: Any, encoded: bytes) -> bytes:
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[key] = encoded
    return encoded


def decode_payload(payload: memoryview) -> tuple[int, KafkaMessage]:
    """The offset and message of one payload whose CRC was checked.

    Raises:
        ValueError: the payload's structure is inconsistent (a bug or damage the CRC missed).
    """
    try:
        offset, received_us, event_us, stream_code = _FIXED.unpack_from(payload, 0)
        position = _FIXED.size
        topic, position = _read_text(payload, position)
        business: str | None
        if _U16.unpack_from(payload, position)[0] == _NONE_TEXT:
            business, position = None, position + 2
        else:
            business, position = _read_text(payload, position)
        (key_length,) = _I32.unpack_from(payload, position)
        position += 4
        key = None if key_length < 0 else bytes(payload[position : position + key_length])
        position += max(key_length, 0)
        (value_length,) = _U32.unpack_from(payload, position)
        position += 4
        value = bytes(payload[position : position + value_length])
        position += value_length
        (count,) = _U16.unpack_from(payload, position)
        position += 2
        headers = []
        for _ in range(count):
            name, position = _read_text(payload, position)
            (length,) = _U32.unpack_from(payload, position)
            position += 4
            headers.append((name, bytes(payload[position : position + length])))
            position += length
        if position != len(payload):
            raise ValueError("trailing bytes in a spool entry")
        message = KafkaMessage(
            topic=topic,
            key=key,
            value=value,
            headers=tuple(headers),
            stream=_STREAMS[stream_code],
            business=business,
            event_time=None if event_us < 0 else EPOCH + event_us * _MICROSECOND,
            received_time=EPOCH + received_us * _MICROSECOND,
        )
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed spool entry: {exc}") from exc
    return offset, message


def _read_text(payload: memoryview, position: int) -> tuple[str, int]:
    (length,) = _U16.unpack_from(payload, position)
    start = position + 2
    if start + length > len(payload):
        raise ValueError("text runs past the entry")
    return bytes(payload[start : start + length]).decode(), start + length


def scan(data: bytes | memoryview, start: int = 0, *, final: bool = True) -> Iterator[Frame | Damage]:
    """Every good entry from ``start`` on, in order, and every stretch of damage between them.

    With ``final`` off the data may end in the middle of an entry still being read: the scan
    then stops before it, yielding nothing for it; the caller resumes there with more data.
    With ``final`` on (the whole file) such an entry is a torn write.
    """
    view = memoryview(data)
    end = len(view)
    position = start
    while position < end:
        found = _frame_at(view, position)
        if isinstance(found, Frame):
            yield found
            position += found.size
            continue
        if found and not final:
            return
        following = _next_good(view, position + 1)
        if following is None:
            if final:  # else more data may still show where the next entry starts
                yield Damage(position, end - position, torn=found)
            return
        yield Damage(position, following - position, torn=False)
        position = following


def _frame_at(view: memoryview, position: int) -> Frame | bool:
    """The good entry at ``position``, else whether what is there could be an entry cut short (True) or is damage."""
    end = len(view)
    if position + FRAME_BYTES > end:
        rest = bytes(view[position:end])
        return rest[:2] == MARKER[: len(rest[:2])]
    marker, length, crc = _FRAME.unpack_from(view, position)
    if marker != MARKER or length > MAX_ENTRY_BYTES or length < _FIXED.size:
        return False
    body_start = position + FRAME_BYTES
    if body_start + length > end:
        return True
    if zlib.crc32(view[body_start : body_start + length]) != crc:
        return False
    (offset,) = _OFFSET.unpack_from(view, body_start)
    return Frame(position, FRAME_BYTES + length, offset)


def payload_of(view: memoryview, frame: Frame) -> memoryview:
    """The payload bytes of a good entry, for :func:`decode_payload`."""
    return view[frame.position + FRAME_BYTES : frame.position + frame.size]


def _next_good(view: memoryview, position: int) -> int | None:
    """Where the next entry that checks out starts, at or after ``position``."""
    data = bytes(view)
    while True:
        found = data.find(MARKER, position)
        if found < 0:
            return None
        if isinstance(_frame_at(view, found), Frame):
            return found
        position = found + 1
