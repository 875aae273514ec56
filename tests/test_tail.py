"""``infoway-bridge tail``'s decoding, without Kafka: framings, schema lookup, exact JSON, one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from bridge.protocol.normalize import normalize_depth, normalize_trade
from bridge.records import DeadLetter, DeadLetterStage, Provenance, Stream
from bridge.serialize import SCHEMA_NAMES, Framing, KafkaMessage, RecordSerializer, TopicMap, schema_json
from bridge.tail import LineOptions, Undecodable, ValueDecoder, json_ready, record_line
from tests.kafka_tools import SCHEMAS

PROVENANCE = Provenance("crypto", "crypto-0#1@run", 7, datetime(2026, 8, 15, 12, 0, 0, 123456, tzinfo=UTC))
TOPICS = TopicMap({Stream.TRADE: "trades", Stream.DEPTH: "depth", Stream.KLINE: "kline"}, "dlq")


def fixture_payload(name: str) -> dict[str, Any]:
    """The data of a recorded push from tests/fixtures."""
    data: dict[str, Any] = orjson.loads((SCHEMAS.parent / "tests" / "fixtures" / name).read_bytes())["data"]
    return data


def trade_message(framing: Framing | None = None) -> KafkaMessage:
    """The recorded trade push as the bridge would produce it with ``framing`` (raw by default)."""
    serializer = RecordSerializer(TOPICS, framing)
    return serializer.serialize(normalize_trade(fixture_payload("push_trade.json"), PROVENANCE))


def test_values_become_exact_readable_json() -> None:
    """Decimals print as exact plain strings without the scale's zeros, instants as ISO-8601 UTC to the millisecond."""
    assert json_ready(Decimal("63039.000000000000000000")) == "63039"
    assert json_ready(Decimal("0.000000000000000001")) == "0.000000000000000001"
    assert json_ready(Decimal("-12345678901234567890.5")) == "-12345678901234567890.5"
    assert json_ready(Decimal("0E-18")) == "0"
    assert json_ready(datetime(2026, 8, 15, 6, 27, 0, 123000, tzinfo=UTC)) == "2026-08-15T06:27:00.123Z"
    assert json_ready({"levels": [{"price": Decimal("1.50")}]}) == {"levels": [{"price": "1.5"}]}


@pytest.mark.parametrize("framing", [Framing.raw(), Framing.single_object()])
def test_auto_finds_the_schema_by_header_or_fingerprint(framing: Framing) -> None:
    """In auto mode a raw value is decoded by its schema header, a single-object one by its fingerprint."""
    message = trade_message(framing)
    datum = ValueDecoder("auto").decode(message.value, dict(message.headers))
    assert (datum["symbol"], datum["price"], datum["side"]) == ("BTCUSDT", Decimal("63039"), "BUY")
    assert datum["received_time"] == datetime(2026, 8, 15, 12, 0, 0, 123000, tzinfo=UTC)


def test_confluent_values_are_decoded_with_the_schema_fetched_by_their_id() -> None:
    """A confluent value's schema is fetched once by the id in its prefix, and the body decoded with it."""
    message = trade_message(Framing.confluent(dict.fromkeys(SCHEMA_NAMES, 41)))
    asked: list[int] = []

    def fetch(schema_id: int) -> str:
        asked.append(schema_id)
        return json.dumps(schema_json("trade"))

    decoder = ValueDecoder("confluent", fetch_schema=fetch)
    for _ in range(3):
        assert decoder.decode(message.value, {})["size"] == Decimal("0.07933")
    assert asked == [41]


@pytest.mark.parametrize(
    ("wire_format", "value", "headers", "reason"),
    [
        ("confluent", b"\x7b\x22s\x22", {}, "not a confluent value (magic byte 7b, not 00)"),
        ("single-object", b"\x00\x01", {}, "not a single-object value (starts with 0001, not c301)"),
        ("single-object", b"\xc3\x01" + bytes(8) + b"\x02", {}, "unknown schema fingerprint 0000000000000000"),
        ("raw", b"\x02", {}, "raw value without a schema header; pass --schema"),
        ("raw", b"\x02", {"schema": b"io.infoway.marketdata.Trade"}, "io.infoway.marketdata.Trade, not shipped here"),
        ("raw", b"\x06abc", {"schema": b"io.infoway.marketdata.v2.Trade"}, "does not decode as io.infoway"),
        ("auto", b"\x02", {"wire-format": b"protobuf"}, "unknown wire-format header 'protobuf'"),
        ("raw", None, {}, "tombstone"),
    ],
)
def test_undecodable_values_say_why_in_one_line(
    wire_format: str, value: bytes | None, headers: dict[str, bytes], reason: str
) -> None:
    """Each way a value can be wrong raises Undecodable with a one-line reason naming what was found."""
    with pytest.raises(Undecodable) as caught:
        ValueDecoder(wire_format, fetch_schema=lambda _: "{}").decode(value, headers)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_leftover_bytes_are_not_silently_ignored() -> None:
    """A value longer than its record (another schema, or two values glued) is refused, not half-read."""
    message = trade_message()
    with pytest.raises(Undecodable, match="1 bytes left over"):
        ValueDecoder("raw").decode(message.value + b"\x00", dict(message.headers))


def test_an_explicit_schema_wins_over_the_headers() -> None:
    """--schema decodes raw values whose headers are missing."""
    message = RecordSerializer(TOPICS).serialize(normalize_depth(fixture_payload("push_depth.json"), PROVENANCE))
    datum = ValueDecoder("raw", schema=schema_json("depth")).decode(message.value, {})
    assert datum["bids"][0] == {"price": Decimal("63038.99"), "size": Decimal("2.12269")}


def test_a_record_line_carries_key_and_headers_only_on_request() -> None:
    """The line has partition, offset, timestamp and value; key and headers only when asked for."""
    plain = json.loads(
        record_line(2, 17, 1_786_775_227_483, b"BTCUSDT", [("stream", b"trade")], {"a": 1}, LineOptions())
    )
    assert plain == {"partition": 2, "offset": 17, "timestamp": "2026-08-15T06:27:07.483Z", "value": {"a": 1}}
    full = json.loads(record_line(0, 1, 0, b"BTCUSDT", [("stream", b"trade")], {}, LineOptions(key=True, headers=True)))
    assert (full["key"], full["headers"]) == ("BTCUSDT", {"stream": "trade"})


def test_dead_letters_decode_by_their_schema_header() -> None:
    """A dead letter is found by its schema header like market records, its instant in ISO UTC."""
    letter = DeadLetter(
        "invalid_json", DeadLetterStage.CLASSIFY, "frame not understood", "{oops", PROVENANCE.received_time
    )
    message = RecordSerializer(TOPICS).serialize_dead_letter(letter)
    datum = json_ready(ValueDecoder("auto").decode(message.value, dict(message.headers)))
    assert (datum["reason"], datum["raw"], datum["received_time"]) == (
        "invalid_json",
        "{oops",
        "2026-08-15T12:00:00.123Z",
    )
