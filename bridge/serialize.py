"""Records to Kafka messages: Avro values per ``schemas/*.avsc``, the symbol as key, context headers.

No Kafka client here: schemas in, bytes out. Decimals are made exact for the schema's scale
before fastavro sees them, because fastavro refuses a value whose scale exceeds the schema's and
does not check precision at all: a value that cannot be carried exactly raises
:class:`NotRepresentable` (it goes to the dead-letter topic) and is never rounded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Literal

import fastavro

from bridge.errors import MalformedPayload
from bridge.records import DepthRecord, GapRecord, KlineRecord, MarketRecord, PriceLevel, Stream, TradeRecord
from bridge.redact import redact

DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18
_SCALE_FACTOR = 10**DECIMAL_SCALE
_PRECISION_LIMIT = 10**DECIMAL_PRECISION
SINGLE_OBJECT_MARKER = b"\xc3\x01"

WireFormat = Literal["raw", "single-object", "confluent"]
CONFLUENT_MAGIC = b"\x00"
DeadLetterStage = Literal["classify", "normalize", "serialize", "produce"]


class NotRepresentable(MalformedPayload):
    """A decimal has more fractional digits or more digits in all than the schema carries."""


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """One message ready for the producer, with what the metrics need to measure lag.

    ``stream`` and ``event_time`` are ``None`` for dead letters, which have no market time.
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    stream: Stream | None
    business: str | None
    event_time: datetime | None
    received_time: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something that could not become market data, and why (``schemas/dead_letter.avsc``)."""

    reason: str
    stage: DeadLetterStage
    detail: str
    raw: str
    received_time: datetime
    business: str | None = None
    connection_id: str | None = None
    target_topic: str | None = None


SCHEMA_NAMES = ("trade", "depth", "kline", "dead_letter", "gap")


@cache
def schema_json(name: str) -> dict[str, Any]:
    """``schemas/<name>.avsc`` as written (what a registry should store), from the installed package."""
    text = resources.files("bridge").joinpath("schemas", f"{name}.avsc").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``schemas/<name>.avsc`` parsed by fastavro, for writing."""
    parsed = fastavro.parse_schema(schema_json(name))
    if not isinstance(parsed, dict):
        raise TypeError(f"schemas/{name}.avsc is not a record schema")
    return parsed


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_logical_types(value) for key, value in node.items() if key not in _LOGICAL_KEYS}
    if isinstance(node, list):
        return [_without_logical_types(item) for item in node]
    return node


_LOGICAL_KEYS = frozenset({"logicalType", "precision", "scale"})


@cache
def writer_schema(name: str) -> dict[str, Any]:
    """The schema with its logical types removed: what the hot path hands fastavro.

    The bytes are the same (a decimal is its unscaled integer in two's complement, a timestamp
    its epoch count), but converting here, exactly and once, is about twice as fast as letting
    fastavro convert Decimal and datetime objects (bench/bench_pipeline.py), and it keeps the
    exactness rule in our hands.
    """
    parsed = fastavro.parse_schema(_without_logical_types(schema_json(name)))
    if not isinstance(parsed, dict):
        raise TypeError(f"schemas/{name}.avsc is not a record schema")
    return parsed


_MILLISECOND = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def millis(instant: datetime) -> int:
    """Epoch milliseconds (timestamp-millis), truncated: every instant in the schemas is in milliseconds."""
    return (instant - _EPOCH) // _MILLISECOND


def decimal_bytes(value: Decimal, field: str) -> bytes:
    """The Avro ``decimal(38,18)`` encoding of ``value``: its unscaled integer, big-endian two's complement.

    Exact by construction: the value as a ratio of integers, times 10**18, must divide evenly
    and stay under 38 digits; otherwise it cannot be carried and nothing is rounded.

    Raises:
        NotRepresentable: the value needs more digits than the schema carries.
    """
    numerator, denominator = value.as_integer_ratio()
    unscaled: int
    remainder: int
    unscaled, remainder = divmod(numerator * _SCALE_FACTOR, denominator)
    if remainder or not -_PRECISION_LIMIT < unscaled < _PRECISION_LIMIT:
        raise NotRepresentable(
            "decimal_not_representable",
            f"{field} needs more than decimal({DECIMAL_PRECISION},{DECIMAL_SCALE})",
        )
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


def _optional(value: Decimal | None, field: str) -> bytes | None:
    return None if value is None else decimal_bytes(value, field)


def _common(record: MarketRecord) -> dict[str, Any]:
    provenance = record.provenance
    return {
        "symbol": record.symbol,
        "business": provenance.business,
        "event_time": millis(record.event_time),
        "received_time": millis(provenance.received_time),
        "connection_id": provenance.connection_id,
        "sequence": provenance.sequence,
    }


def trade_to_avro(record: TradeRecord) -> dict[str, Any]:
    """The Avro datum of a trade."""
    datum = _common(record)
    datum["price"] = decimal_bytes(record.price, "price")
    datum["size"] = decimal_bytes(record.size, "size")
    datum["amount"] = _optional(record.amount, "amount")
    datum["side"] = record.side.value
    datum["trade_type"] = record.trade_type
    return datum


def _levels(levels: tuple[PriceLevel, ...], field: str) -> list[dict[str, bytes]]:
    return [{"price": decimal_bytes(level.price, field), "size": decimal_bytes(level.size, field)} for level in levels]


def depth_to_avro(record: DepthRecord) -> dict[str, Any]:
    """The Avro datum of a depth snapshot."""
    datum = _common(record)
    datum["bids"] = _levels(record.bids, "bids")
    datum["asks"] = _levels(record.asks, "asks")
    return datum


def kline_to_avro(record: KlineRecord) -> dict[str, Any]:
    """The Avro datum of a kline bar."""
    datum = _common(record)
    datum["interval"] = record.interval
    datum["open_time"] = millis(record.open_time)
    for field in ("open", "high", "low", "close", "volume", "amount"):
        datum[field] = decimal_bytes(getattr(record, field), field)
    datum["change"] = _optional(record.change, "change")
    datum["change_percent"] = _optional(record.change_percent, "change_percent")
    return datum


_TO_AVRO: Mapping[Stream, Callable[[Any], dict[str, Any]]] = {
    Stream.TRADE: trade_to_avro,
    Stream.DEPTH: depth_to_avro,
    Stream.KLINE: kline_to_avro,
}


def single_object_header(schema: dict[str, Any]) -> bytes:
    """The Avro single-object prefix: marker 0xC3 0x01 then the schema's CRC-64-AVRO, little-endian.

    fastavro's hex digest already lists the fingerprint's bytes in little-endian order (as
    Apache avro's and Java's do), so it is used as it is.
    """
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    fingerprint = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    return SINGLE_OBJECT_MARKER + bytes.fromhex(fingerprint)


class RecordSerializer:
    """Encodes records of every stream for their topics in one wire format.

    Args:
        topics: stream to topic name.
        wire_format: ``raw`` (plain Avro binary) or ``single-object`` (Avro's single-object
            encoding, for consumers without a registry).
    """

    def __init__(
        self,
        topics: Mapping[Stream, str],
        dead_letter_topic: str,
        *,
        wire_format: WireFormat = "raw",
        secrets: tuple[str, ...] = (),
        dead_letter_max_raw_chars: int = 65_536,
    ) -> None:
        self._topics = dict(topics)
        self._dead_letter_topic = dead_letter_topic
        self._dead_letter_schema = writer_schema("dead_letter")
        self._gap_schema = writer_schema("gap")
        self._secrets = secrets
        self._max_raw = dead_letter_max_raw_chars
        self._schemas = {stream: writer_schema(stream.value) for stream in Stream}
        self._prefix: dict[str, bytes] = {}
        self._schema_headers: dict[str, tuple[tuple[str, bytes], ...]] = {}
        for name in SCHEMA_NAMES:
            schema = load_schema(name)
            fingerprint = single_object_header(schema)[2:][::-1].hex()
            self._prefix[name] = single_object_header(schema) if wire_format == "single-object" else b""
            self._schema_headers[name] = (
                ("wire-format", wire_format.encode()),
                ("schema", str(schema["name"]).encode()),
                ("schema-fingerprint", fingerprint.encode()),
            )

    def use_schema_ids(self, ids: Mapping[str, int]) -> None:
        """Frame values as Confluent does: magic byte 0, then the registry's 4-byte schema id.

        Called once at start, before any record, with the id of every schema name in use.
        """
        for name, schema_id in ids.items():
            self._prefix[name] = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            self._schema_headers[name] = (*self._schema_headers[name], ("schema-id", str(schema_id).encode()))

    def serialize(self, record: MarketRecord) -> KafkaMessage:
        """One record as a Kafka message.

        Raises:
            NotRepresentable: a decimal does not fit the schema exactly.
        """
        stream = record.stream
        buffer = io.BytesIO()
        buffer.write(self._prefix[stream.value])
        fastavro.schemaless_writer(buffer, self._schemas[stream], _TO_AVRO[stream](record))
        provenance = record.provenance
        received = provenance.received_time
        return KafkaMessage(
            topic=self._topics[stream],
            key=record.symbol.encode("utf-8"),
            value=buffer.getvalue(),
            headers=(
                ("business", provenance.business.encode()),
                ("stream", stream.value.encode()),
                ("received-at", received.isoformat(timespec="microseconds").encode()),
                *self._schema_headers[stream.value],
            ),
            stream=stream,
            business=provenance.business,
            event_time=record.event_time,
            received_time=received,
        )

    def serialize_gap(self, gap: GapRecord, topic: str) -> KafkaMessage:
        """A gap record for the gap topic, keyed by the connection's plan name."""
        datum = {
            "business": gap.business,
            "connection": gap.connection,
            "codes": list(gap.codes),
            "streams": [stream.value for stream in gap.streams],
            "start": millis(gap.start),
            "end": millis(gap.end),
            "cause": gap.cause,
            "resolved": gap.resolved,
            "previous_connection_id": gap.previous_connection_id,
            "next_connection_id": gap.next_connection_id,
        }
        buffer = io.BytesIO(self._prefix["gap"])
        buffer.seek(0, io.SEEK_END)
        fastavro.schemaless_writer(buffer, self._gap_schema, datum)
        return KafkaMessage(
            topic=topic,
            key=gap.connection.encode(),
            value=buffer.getvalue(),
            headers=(("business", gap.business.encode()), ("cause", gap.cause.encode()), *self._schema_headers["gap"]),
            stream=None,
            business=gap.business,
            event_time=None,
            received_time=gap.end,
        )

    def serialize_dead_letter(self, letter: DeadLetter) -> KafkaMessage:
        """A dead letter as a message for the dead-letter topic, the key scrubbed from its text.

        The raw text is cut to the configured limit after scrubbing, so a cut can never leave
        half a key behind.
        """
        raw = redact(letter.raw, self._secrets)
        detail = redact(letter.detail, self._secrets)
        truncated = len(raw) > self._max_raw
        datum = {
            "reason": letter.reason,
            "stage": letter.stage,
            "detail": detail,
            "business": letter.business,
            "connection_id": letter.connection_id,
            "target_topic": letter.target_topic,
            "received_time": millis(letter.received_time),
            "raw": raw[: self._max_raw],
            "raw_length": len(letter.raw),
            "raw_truncated": truncated,
        }
        buffer = io.BytesIO(self._prefix["dead_letter"])
        buffer.seek(0, io.SEEK_END)
        fastavro.schemaless_writer(buffer, self._dead_letter_schema, datum)
        headers = [
            ("infoway.errors.reason", letter.reason.encode()),
            ("infoway.errors.stage", letter.stage.encode()),
            ("infoway.errors.detail", detail.encode()),
        ]
        if letter.business is not None:
            headers.append(("infoway.errors.business", letter.business.encode()))
        if letter.connection_id is not None:
            headers.append(("infoway.errors.connection", letter.connection_id.encode()))
        if letter.target_topic is not None:
            headers.append(("infoway.errors.target.topic", letter.target_topic.encode()))
        return KafkaMessage(
            topic=self._dead_letter_topic,
            key=letter.business.encode() if letter.business is not None else None,
            value=buffer.getvalue(),
            headers=(*headers, *self._schema_headers["dead_letter"]),
            stream=None,
            business=letter.business,
            event_time=None,
            received_time=letter.received_time,
        )
