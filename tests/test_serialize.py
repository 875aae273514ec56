"""Records to Kafka messages: exact decimals, wire formats and dead letters, decoded by Apache avro."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from avro.schema import _crc_64_fingerprint
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import MalformedPayload
from bridge.protocol import normalize_depth, normalize_kline, normalize_trade
from bridge.records import DeadLetter, DeadLetterStage, Stream
from bridge.serialize import (
    Framing,
    HeaderSet,
    NotRepresentable,
    RecordSerializer,
    TopicMap,
    decimal_bytes,
    load_schema,
    single_object_header,
)
from tests.kafka_tools import apache_schema, decode
from tests.protocol.frames import PROVENANCE, fixture

TOPICS = TopicMap({Stream.TRADE: "t.trades", Stream.DEPTH: "t.depth", Stream.KLINE: "t.kline"}, "t.dlq", "t.gaps")


def payload(name: str) -> dict[str, Any]:
    """A fixture push's data."""
    data: dict[str, Any] = json.loads(fixture(name))["data"]
    return data


def serializer(framing: Framing | None = None) -> RecordSerializer:
    """A serializer with test topics and a known secret to scrub."""
    return RecordSerializer(TOPICS, framing, secrets=("sekret-key",), dead_letter_max_raw_chars=300)


def unscaled(encoded: bytes) -> Decimal:
    """Read a decimal(38,18) encoding back: two's complement, then scale 18."""
    return Decimal(int.from_bytes(encoded, "big", signed=True)).scaleb(-18, context=Context(prec=60))


@pytest.mark.parametrize(
    "text",
    ["63039.00000000", "0.000000000000000001", "99999999999999999999.999999999999999999", "-9.00000", "0", "-0.07933"],
)
def test_decimal_bytes_keep_the_value(text: str) -> None:
    """Values with up to 18 fractional and 20 integer digits encode to exactly their value."""
    assert unscaled(decimal_bytes(Decimal(text), "p")) == Decimal(text)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=18, min_value=-(10**19), max_value=10**19))
def test_decimal_bytes_are_what_apache_avro_reads(value: Decimal) -> None:
    """Any value within decimal(38,18) round-trips exactly through our encoding and Apache avro's decoder."""
    schema = avro.schema.parse('{"type":"bytes","logicalType":"decimal","precision":38,"scale":18}')
    decoded = avro.io.DatumReader(schema).read(
        avro.io.BinaryDecoder(io.BytesIO(_bytes_field(decimal_bytes(value, "p"))))
    )
    assert decoded == value


def _bytes_field(payload: bytes) -> bytes:
    """An Avro ``bytes`` value: zig-zag varint length, then the payload."""
    out = io.BytesIO()
    avro.io.BinaryEncoder(out).write_bytes(payload)
    return out.getvalue()


@pytest.mark.parametrize("text", ["0.0000000000000000001", "100000000000000000000", "1E+25", "1.23456789012345678901"])
def test_values_that_do_not_fit_are_refused_not_rounded(text: str) -> None:
    """More than 18 fractional digits or more than 20 integer digits raise NotRepresentable."""
    with pytest.raises(NotRepresentable) as caught:
        decimal_bytes(Decimal(text), "price")
    assert caught.value.reason == "decimal_not_representable"
    assert isinstance(caught.value, MalformedPayload)


def test_unrepresentable_price_fails_the_whole_record() -> None:
    """A trade with a 19-decimal price cannot be serialized (the feed routes it to the dead-letter topic)."""
    record = normalize_trade(payload("push_trade.json") | {"p": "0.0000000000000000001"}, PROVENANCE)
    with pytest.raises(NotRepresentable):
        serializer().serialize(record)


@pytest.mark.parametrize(
    ("name", "normalize", "schema"),
    [
        ("push_trade.json", normalize_trade, "trade"),
        ("push_depth.json", normalize_depth, "depth"),
        ("push_kline.json", normalize_kline, "kline"),
    ],
)
def test_raw_values_decode_with_apache_avro(name: str, normalize: Any, schema: str) -> None:
    """Raw Avro values of every stream decode with the Apache implementation to the same numbers and times."""
    record = normalize(payload(name), PROVENANCE)
    message = serializer().serialize(record)
    value = decode(apache_schema(schema), message.value)
    assert message.key == b"BTCUSDT"
    assert message.topic == TOPICS.streams[record.stream]
    assert value["symbol"] == "BTCUSDT"
    assert value["business"] == "crypto"
    assert value["event_time"] == record.event_time
    assert value["received_time"] == PROVENANCE.received_time
    assert (value["connection_id"], value["sequence"]) == ("crypto-0#1", 1)
    if schema == "trade":
        assert (value["price"], value["size"], value["amount"], value["side"]) == (
            Decimal("63039"),
            Decimal("0.07933"),
            Decimal("5000.88387"),
            "BUY",
        )
    if schema == "depth":
        assert value["bids"][0] == {"price": Decimal("63038.99"), "size": Decimal("2.12269")}
        assert value["asks"][0] == {"price": Decimal("63039"), "size": Decimal("45.06645")}
    if schema == "kline":
        assert (value["interval"], value["open_time"], value["change_percent"]) == (
            "1m",
            datetime(2026, 8, 15, 6, 27, tzinfo=UTC),
            Decimal("-0.01"),
        )


def test_lean_headers_are_what_a_consumer_needs_to_decode() -> None:
    """By default a raw record carries its stream, the wire format and its schema's name and fingerprint only."""
    message = serializer().serialize(normalize_trade(payload("push_trade.json"), PROVENANCE))
    headers = dict(message.headers)
    assert list(headers) == ["stream", "wire-format", "schema", "schema-fingerprint"]
    assert headers["stream"] == b"trade"
    assert headers["schema"] == b"io.infoway.marketdata.v2.Trade"
    assert headers["wire-format"] == b"raw"
    assert len(headers["schema-fingerprint"]) == 16


def test_lean_headers_leave_the_schema_to_a_self_describing_value() -> None:
    """A single-object value names its schema in its prefix, so the lean headers say only stream and format."""
    message = serializer(Framing.single_object()).serialize(normalize_trade(payload("push_trade.json"), PROVENANCE))
    assert message.headers == (("stream", b"trade"), ("wire-format", b"single-object"))


def test_full_headers_carry_context() -> None:
    """With headers: full every value travels with business, stream, receipt time and the schema's identity."""
    full = RecordSerializer(TOPICS, headers=HeaderSet.FULL)
    message = full.serialize(normalize_trade(payload("push_trade.json"), PROVENANCE))
    headers = dict(message.headers)
    assert headers["business"] == b"crypto"
    assert headers["stream"] == b"trade"
    assert headers["received-at"] == b"2026-08-15T12:00:00.000000+00:00"
    assert headers["schema"] == b"io.infoway.marketdata.v2.Trade"
    assert headers["wire-format"] == b"raw"
    assert len(headers["schema-fingerprint"]) == 16
    assert message.value == serializer().serialize(normalize_trade(payload("push_trade.json"), PROVENANCE)).value


def spec_canonical_form(schema: avro.schema.Schema) -> str:
    """The spec's Parsing Canonical Form, from Apache avro's, with one defect of it repaired.

    Apache avro (Python, 1.12) writes a primitive with a logical type as {"type":"long"}; the
    spec's [PRIMITIVES] rule makes it "long" (Java and fastavro agree with the spec).
    """

    def repair(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"type"} and isinstance(node["type"], str):
                return node["type"]
            return {key: repair(value) for key, value in node.items()}
        if isinstance(node, list):
            return [repair(item) for item in node]
        return node

    return json.dumps(repair(json.loads(schema.canonical_form)), separators=(",", ":"))


@pytest.mark.parametrize("schema", ["trade", "depth", "kline", "dead_letter", "gap"])
def test_single_object_header_is_the_spec_fingerprint(schema: str) -> None:
    """Single-object values start with C3 01 and the little-endian CRC-64-AVRO of the spec's canonical form."""
    apache = apache_schema(schema)
    canonical = spec_canonical_form(apache)
    assert canonical == fastavro.schema.to_parsing_canonical_form(load_schema(schema))
    fingerprint = _crc_64_fingerprint(canonical.encode())
    assert single_object_header(load_schema(schema)) == b"\xc3\x01" + fingerprint


def test_crc_64_avro_known_answer() -> None:
    """The spec's fingerprint of "int" is 0x7275d51a3f395c8f, written little-endian: 8f 5c 39 3f 1a d5 75 72."""
    assert single_object_header({"type": "int"}) == bytes.fromhex("c301 8f5c393f1ad57572")


def test_single_object_trade_decodes_after_its_header() -> None:
    """A single-object trade is the marker, the fingerprint, then a plain Avro body."""
    message = serializer(Framing.single_object()).serialize(normalize_trade(payload("push_trade.json"), PROVENANCE))
    fingerprint = _crc_64_fingerprint(spec_canonical_form(apache_schema("trade")).encode())
    assert message.value[:10] == b"\xc3\x01" + fingerprint
    assert decode(apache_schema("trade"), message.value[10:])["price"] == Decimal("63039")


def test_confluent_framing_uses_the_registry_id() -> None:
    """A confluent value is magic byte 0, the 4-byte big-endian schema id, then Avro; full headers repeat the id."""
    framing = Framing.confluent({"trade": 4242, "depth": 1, "kline": 2, "dead_letter": 3, "gap": 5})
    message = serializer(framing).serialize(normalize_trade(payload("push_trade.json"), PROVENANCE))
    assert message.value[:5] == b"\x00\x00\x00\x10\x92"
    assert "schema-id" not in dict(message.headers)
    full = RecordSerializer(TOPICS, framing, headers=HeaderSet.FULL)
    assert dict(full.serialize(normalize_trade(payload("push_trade.json"), PROVENANCE)).headers)["schema-id"] == b"4242"
    assert decode(apache_schema("trade"), message.value[5:])["size"] == Decimal("0.07933")


def test_dead_letters_are_scrubbed_truncated_and_explained() -> None:
    """A dead letter keeps the reason, never the key, and at most the configured raw length."""
    raw = '{"url":"wss://x/ws?apikey=sekret-key&business=crypto","pad":"' + "x" * 1000 + '"}'
    letter = DeadLetter(
        "invalid_json",
        DeadLetterStage.CLASSIFY,
        "frame not understood",
        raw,
        PROVENANCE.received_time,
        "crypto",
        "crypto-0#1",
    )
    message = serializer().serialize_dead_letter(letter)
    value = decode(apache_schema("dead_letter"), message.value)
    assert "sekret-key" not in value["raw"]
    assert "apikey=***" in value["raw"]
    assert (value["raw_truncated"], len(value["raw"]), value["raw_length"]) == (True, 300, len(raw))
    assert (value["reason"], value["stage"], value["business"], value["connection_id"]) == (
        "invalid_json", "classify", "crypto", "crypto-0#1",
    )  # fmt: skip
    headers = dict(message.headers)
    assert headers["infoway.errors.reason"] == b"invalid_json"
    assert headers["infoway.errors.stage"] == b"classify"
    assert message.topic == "t.dlq"
    assert b"sekret-key" not in b"".join(v for _, v in message.headers)


def test_fastavro_and_apache_agree_on_every_byte() -> None:
    """What fastavro writes, Apache avro reads back to the same datum and re-encodes to the same bytes."""
    message = serializer().serialize(normalize_depth(payload("push_depth.json"), PROVENANCE))
    schema = apache_schema("depth")
    datum = decode(schema, message.value)
    out = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(out))
    assert out.getvalue() == message.value
