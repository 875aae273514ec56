"""Records to Kafka messages: Avro values per ``schemas/*.avsc``, the symbol as key, context headers.

No Kafka client here: schemas in, bytes out. Each record becomes a datum (a dict per its schema,
the mappings below), which the schema's compiled encoder (:mod:`bridge.avro_writer`) writes.
Decimals are made exact for the schema's scale first: a value that cannot be carried exactly
raises :class:`NotRepresentable` (it goes to the dead-letter topic) and is never rounded. The
schemas and the framing live in :mod:`bridge.framing`; their names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.errors import MalformedPayload
from bridge.framing import (
    CONFLUENT_MAGIC,
    SCHEMA_NAMES,
    SINGLE_OBJECT_MARKER,
    Framing,
    HeaderSet,
    WireFormat,
    avro_writer,
    load_schema,
    schema_json,
    single_object_header,
    writer_schema,
)
from bridge.records import (
    DeadLetter,
    DepthRecord,
    GapRecord,
    KlineRecord,
    MarketRecord,
    PriceLevel,
    Stream,
    TradeRecord,
    epoch_millis,
)
from bridge.redact import redact
from bridge.serialize_backfill import backfill_to_avro

__all__ = [
    "CONFLUENT_MAGIC",
    "SCHEMA_NAMES",
    "SINGLE_OBJECT_MARKER",
    "Framing",
    "HeaderSet",
    "KafkaMessage",
    "NotRepresentable",
    "RecordSerializer",
    "TopicMap",
    "WireFormat",
    "decimal_bytes",
    "load_schema",
    "schema_json",
    "single_object_header",
    "writer_schema",
]

DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18
_SCALE_FACTOR = 10**DECIMAL_SCALE
_PRECISION_LIMIT = 10**DECIMAL_PRECISION


class NotRepresentable(MalformedPayload):
    """A decimal has more fractional digits or more digits in all than the schema carries."""


@dataclass(slots=True)
class KafkaMessage:
    """One message ready for the producer, with what the metrics need to measure lag.

    ``stream`` and ``event_time`` are ``None`` for dead letters, which have no market time. Built
    once per record, so not frozen (see ``bridge.records``); nothing changes it after construction.
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    stream: Stream | None
    business: str | None
    event_time: datetime | None
    received_time: datetime


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
        "event_time": epoch_millis(record.event_time),
        "received_time": epoch_millis(provenance.received_time),
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
    datum["source"] = record.source.value
    return datum


def kline_to_avro(record: KlineRecord) -> dict[str, Any]:
    """The Avro datum of a kline bar."""
    datum = _common(record)
    datum["interval"] = record.interval
    datum["open_time"] = epoch_millis(record.open_time)
    for name in ("open", "high", "low", "close", "volume", "amount"):
        datum[name] = decimal_bytes(getattr(record, name), name)
    datum["change"] = _optional(record.change, "change")
    datum["change_percent"] = _optional(record.change_percent, "change_percent")
    datum["source"] = record.source.value
    return datum


_TO_AVRO: Mapping[Stream, Callable[[Any], dict[str, Any]]] = {
    Stream.TRADE: trade_to_avro,
    Stream.DEPTH: depth_to_avro,
    Stream.KLINE: kline_to_avro,
}


@dataclass(frozen=True, slots=True)
class TopicMap:
    """Where everything goes: the topic of each stream in use, the dead letters' and (when set) the gaps'."""

    streams: Mapping[Stream, str]
    dead_letter: str
    gap: str | None = None

    def schema_topics(self) -> dict[str, str]:
        """Every topic written to, by the name of its schema (``trade``, ..., ``dead_letter``, ``gap``)."""
        named = {stream.value: topic for stream, topic in self.streams.items()}
        named["dead_letter"] = self.dead_letter
        if self.gap is not None:
            named["gap"] = self.gap
        return named


class RecordSerializer:
    """Encodes records, gaps and dead letters for their topics in one framing.

    Args:
        topics: where each kind of message goes.
        framing: the wire format; in confluent format it must hold an id for every schema in ``topics``.
        secrets: scrubbed from dead letters' text.
        dead_letter_max_raw_chars: a dead letter's raw text is cut to this, after scrubbing.

    Raises:
        ValueError: a confluent framing lacks the id of a schema in use.
    """

    def __init__(
        self,
        topics: TopicMap,
        framing: Framing | None = None,
        *,
        secrets: tuple[str, ...] = (),
        dead_letter_max_raw_chars: int = 65_536,
        headers: HeaderSet = HeaderSet.LEAN,
    ) -> None:
        framing = framing if framing is not None else Framing.raw()
        names = topics.schema_topics()
        if framing.wire_format is WireFormat.CONFLUENT:
            missing = sorted(set(names) - set(framing.schema_ids))
            if missing:
                raise ValueError(f"confluent framing has no schema id for {', '.join(missing)}")
        self.topics = topics
        self.framing = framing
        self._secrets = secrets
        self._max_raw = dead_letter_max_raw_chars
        self._full_headers = headers is HeaderSet.FULL
        self._write_dead_letter = avro_writer("dead_letter")
        self._write_gap = avro_writer("gap")
        self._prefix = {name: framing.prefix(name) for name in names}
        self._schema_headers = {name: framing.headers(name) for name in names}
        # Per stream, everything constant about its messages: topic, encoder, prefix, lean headers.
        self._streams = {
            stream: (
                topic,
                avro_writer(stream.value),
                self._prefix[stream.value],
                (("stream", stream.value.encode()), *framing.lean_headers(stream.value)),
            )
            for stream, topic in topics.streams.items()
        }

    def serialize(self, record: MarketRecord) -> KafkaMessage:
        """One record as a Kafka message.

        Raises:
            NotRepresentable: a decimal does not fit the schema exactly.
        """
        stream = record.stream
        topic, write, prefix, headers = self._streams[stream]
        provenance = record.provenance
        received = provenance.received_time
        if self._full_headers:
            headers = (
                ("business", provenance.business.encode()),
                ("stream", stream.value.encode()),
                ("received-at", received.isoformat(timespec="microseconds").encode()),
                *self._schema_headers[stream.value],
            )
        return KafkaMessage(
            topic, record.symbol.encode(), prefix + write(_TO_AVRO[stream](record)), headers,
            stream, provenance.business, record.event_time, received,
        )  # fmt: skip

    def serialize_gap(self, gap: GapRecord) -> KafkaMessage | None:
        """A gap record for the gap topic, keyed by the connection's plan name; ``None`` when no gap topic is set."""
        topic = self.topics.gap
        if topic is None:
            return None
        datum = {
            "business": gap.business,
            "connection": gap.connection,
            "codes": list(gap.codes),
            "streams": [stream.value for stream in gap.streams],
            "start": epoch_millis(gap.start),
            "end": epoch_millis(gap.end),
            "cause": gap.cause.value,
            "code": gap.code,
            "resolved": gap.resolved,
            "previous_connection_id": gap.previous_connection_id,
            "next_connection_id": gap.next_connection_id,
            "backfill": None if gap.backfill is None else backfill_to_avro(gap.backfill),
        }
        return KafkaMessage(
            topic=topic,
            key=gap.connection.encode(),
            value=self._prefix["gap"] + self._write_gap(datum),
            headers=(
                ("business", gap.business.encode()),
                ("cause", gap.cause.value.encode()),
                *self._schema_headers["gap"],
            ),
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
            "stage": letter.stage.value,
            "detail": detail,
            "business": letter.business,
            "connection_id": letter.connection_id,
            "target_topic": letter.target_topic,
            "received_time": epoch_millis(letter.received_time),
            "raw": raw[: self._max_raw],
            "raw_length": len(letter.raw),
            "raw_truncated": truncated,
        }
        headers = [
            ("infoway.errors.reason", letter.reason.encode()),
            ("infoway.errors.stage", letter.stage.value.encode()),
            ("infoway.errors.detail", detail.encode()),
        ]
        if letter.business is not None:
            headers.append(("infoway.errors.business", letter.business.encode()))
        if letter.connection_id is not None:
            headers.append(("infoway.errors.connection", letter.connection_id.encode()))
        if letter.target_topic is not None:
            headers.append(("infoway.errors.target.topic", letter.target_topic.encode()))
        return KafkaMessage(
            topic=self.topics.dead_letter,
            key=letter.business.encode() if letter.business is not None else None,
            value=self._prefix["dead_letter"] + self._write_dead_letter(datum),
            headers=(*headers, *self._schema_headers["dead_letter"]),
            stream=None,
            business=letter.business,
            event_time=None,
            received_time=letter.received_time,
        )
