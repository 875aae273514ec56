"""The spool's on-disk format: entries round-trip, and damage costs only the damaged entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.records import Stream
from bridge.serialize import KafkaMessage
from bridge.spool_format import SEGMENT_HEADER, Damage, Frame, decode_payload, encode_entry, payload_of, scan

T0 = datetime(2026, 8, 15, 12, 0, 0, 123456, tzinfo=UTC)


def message(index: int, value: bytes = b"avro") -> KafkaMessage:
    """A trade-like message whose key and value say which one it is."""
    return KafkaMessage(
        "t.trades", f"K{index}".encode(), value + str(index).encode(), (("stream", b"trade"), ("business", b"crypto")),
        Stream.TRADE, "crypto", T0 - timedelta(milliseconds=5), T0,
    )  # fmt: skip


def segment(count: int) -> bytearray:
    """A segment holding entries 1..count."""
    data = bytearray(SEGMENT_HEADER)
    for index in range(1, count + 1):
        data += encode_entry(index, message(index))
    return data


def offsets(data: bytes | bytearray, *, final: bool = True) -> list[int | str]:
    """The offsets of the good entries and ``torn``/``damaged`` marks, in order."""
    return [
        item.offset if isinstance(item, Frame) else ("torn" if item.torn else "damaged")
        for item in scan(bytes(data), len(SEGMENT_HEADER), final=final)
    ]


texts = st.text(min_size=0, max_size=20)
blobs = st.binary(max_size=300)


@settings(max_examples=200)
@given(
    offset=st.integers(min_value=0, max_value=2**63 - 1),
    topic=texts,
    key=st.none() | blobs,
    value=blobs,
    headers=st.lists(st.tuples(texts, blobs), max_size=4),
    stream=st.sampled_from([None, *Stream]),
    business=st.none() | texts,
    with_event=st.booleans(),
)
def test_an_entry_decodes_to_what_was_encoded(
    offset: int,
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]],
    stream: Stream | None,
    business: str | None,
    with_event: bool,
) -> None:
    """Every field of a message survives the spool, instants to the microsecond."""
    original = KafkaMessage(topic, key, value, tuple(headers), stream, business, T0 if with_event else None, T0)
    data = encode_entry(offset, original)
    (frame,) = scan(data)
    assert isinstance(frame, Frame)
    assert (frame.offset, frame.position, frame.size) == (offset, 0, len(data))
    assert decode_payload(payload_of(memoryview(data), frame)) == (offset, original)


def test_a_flipped_byte_costs_one_entry() -> None:
    """A byte flipped inside entry 3 of 6 makes it damaged; entries 1, 2, 4, 5 and 6 are all found."""
    data = segment(6)
    third = [item for item in scan(bytes(data), len(SEGMENT_HEADER)) if isinstance(item, Frame)][2]
    data[third.position + third.size - 3] ^= 0xFF
    assert offsets(data) == [1, 2, "damaged", 4, 5, 6]


def test_a_damaged_length_field_is_skipped_to_the_next_entry() -> None:
    """A corrupted length (the entry seems to run past the end) is damage when good entries follow it."""
    data = segment(4)
    second = [item for item in scan(bytes(data), len(SEGMENT_HEADER)) if isinstance(item, Frame)][1]
    data[second.position + 2 : second.position + 6] = (10**6).to_bytes(4, "big")
    assert offsets(data) == [1, "damaged", 3, 4]


def test_a_cut_last_entry_is_torn() -> None:
    """A write cut short at the end of the file is a torn entry, and everything before it is kept."""
    data = segment(3)[:-7]
    assert offsets(data) == [1, 2, "torn"]


def test_an_entry_still_being_read_is_not_damage() -> None:
    """Without ``final`` an entry cut off by the end of the data read so far is left for the next read."""
    data = segment(3)[:-7]
    assert offsets(data, final=False) == [1, 2]


def test_garbage_between_entries_is_one_damaged_stretch() -> None:
    """Bytes that are no entry at all, between two entries, are skipped as one stretch of damage."""
    garbage = b"\x00garbage\xb5\x1d"
    data = bytearray(SEGMENT_HEADER) + encode_entry(1, message(1)) + garbage + encode_entry(2, message(2))
    items = list(scan(bytes(data), len(SEGMENT_HEADER)))
    assert [type(item) for item in items] == [Frame, Damage, Frame]
    damage = items[1]
    assert isinstance(damage, Damage)
    assert damage.length == len(garbage)
