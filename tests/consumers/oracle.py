"""What the consumer tests compare: the simulator's frames, the topic as Apache avro reads it, and engine rows.

Three views of the same data must agree. ``sent_rows`` turns the frames the simulator wrote
(``record_sent``, the oracle) into market tuples with its own small mapping, independent of the
bridge's normaliser. ``KafkaTruth`` is every record of a topic decoded by the Apache ``avro``
package (the writer schema fetched from the registry in confluent format), whose market fields
must equal what was sent and whose keys must be the symbols. ``canonical`` brings a row of any
reader (Flink's JSON lines, Spark's ``to_json``, Apache avro's dicts) to one exact form by the
schema's logical types, so every field, the bridge's own included, is compared exactly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.request import urlopen

import avro.schema
import orjson

from tests.kafka_tools import SCHEMAS, apache_schema, decode

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SIDES = {0: "UNKNOWN", 1: "BUY", 2: "SELL"}
# The vendor's kline ty numbers and the labels the README documents for them.
INTERVALS = dict(enumerate(["1m", "5m", "15m", "30m", "1h", "2h", "4h", "1d", "1w", "1M", "1Q", "1y"], start=1))
SCHEMA_OF_STREAM = {"trade": "trade", "depth": "depth", "kline": "kline"}
FRAMING_BYTES = {"raw": 0, "single-object": 10, "confluent": 5}
MarketTuple = tuple[object, ...]


def _decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _levels(side: list[list[str]]) -> tuple[tuple[Decimal, Decimal], ...]:
    prices, sizes = side
    return tuple((Decimal(price), Decimal(size)) for price, size in zip(prices, sizes, strict=True))


def sent_tuple(stream: str, business: str, data: Mapping[str, Any]) -> MarketTuple:
    """One pushed payload as the market tuple a consumer must read back (see :func:`market_tuple`)."""
    symbol = data["s"]
    if stream == "trade":
        event_time = EPOCH + timedelta(milliseconds=int(data["t"]))
        return (
            symbol, business, event_time, Decimal(data["p"]), Decimal(data["v"]), _decimal(data.get("vw")),
            SIDES[int(data.get("td", 0))], data.get("ty"),
        )  # fmt: skip
    if stream == "depth":
        event_time = EPOCH + timedelta(milliseconds=int(data["t"]))
        return symbol, business, event_time, _levels(data["b"]), _levels(data["a"])
    percent = data.get("pfr")
    return (
        symbol, business, INTERVALS[int(data["ty"])], EPOCH + timedelta(seconds=int(data["t"])),
        Decimal(data["o"]), Decimal(data["h"]), Decimal(data["l"]), Decimal(data["c"]), Decimal(data["v"]),
        Decimal(data["vw"]), _decimal(data.get("pca")), None if percent is None else Decimal(percent.rstrip("%")),
    )  # fmt: skip


_STREAM_OF_CODE = {10002: "trade", 10005: "depth", 10008: "kline"}


def sent_rows(entries: list[dict[str, Any]]) -> dict[str, Counter[MarketTuple]]:
    """The simulator's record of sent frames as market tuples, counted, per stream."""
    found: dict[str, Counter[MarketTuple]] = {stream: Counter() for stream in SCHEMA_OF_STREAM}
    for entry in entries:
        frame = orjson.loads(entry["frame"])
        stream = _STREAM_OF_CODE[frame["code"]]
        found[stream][sent_tuple(stream, entry["business"], frame["data"])] += 1
    return found


_MARKET_FIELDS = {
    "trade": ("symbol", "business", "event_time", "price", "size", "amount", "side", "trade_type"),
    "depth": ("symbol", "business", "event_time", "bids", "asks"),
    "kline": ("symbol", "business", "interval", "open_time", "open", "high", "low", "close", "volume", "amount",
              "change", "change_percent"),
}  # fmt: skip


def market_tuple(stream: str, row: Mapping[str, Any]) -> MarketTuple:
    """The fields of a canonical row that come from the vendor, in the order of :func:`sent_tuple`."""
    return tuple(row[field] for field in _MARKET_FIELDS[stream])


@cache
def _field_kinds(stream: str) -> dict[str, str]:
    document = json.loads((SCHEMAS / f"{SCHEMA_OF_STREAM[stream]}.avsc").read_text(encoding="utf-8"))
    kinds = {}
    for field in document["fields"]:
        kind = field["type"]
        branches = kind if isinstance(kind, list) else [kind]
        logical = [branch for branch in branches if isinstance(branch, dict)]
        if logical and logical[0].get("type") == "array":
            kinds[field["name"]] = "levels"
        elif logical:
            kinds[field["name"]] = str(logical[0].get("logicalType", "plain"))
        else:
            kinds[field["name"]] = "plain"
    return kinds


def _instant(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    # Flink's TIMESTAMP(3) is the UTC wall-clock time, without a zone.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _level(level: object) -> tuple[Decimal, Decimal]:
    if isinstance(level, Mapping):
        return Decimal(str(level["price"])), Decimal(str(level["size"]))
    assert isinstance(level, list | tuple), level
    return Decimal(str(level[0])), Decimal(str(level[1]))


def canonical(stream: str, row: Mapping[str, Any]) -> dict[str, object]:
    """A row of any reader, by the schema's field names, with exact values (Decimal, aware UTC datetime)."""
    result: dict[str, object] = {}
    for name, kind in _field_kinds(stream).items():
        assert name in row, f"{stream} row lacks {name}: {row}"
        value = row[name]
        if value is None:
            result[name] = None
        elif kind == "decimal":
            result[name] = Decimal(str(value))
        elif kind.startswith("timestamp"):
            result[name] = _instant(value)
        elif kind == "levels":
            result[name] = tuple(_level(level) for level in value)
        else:
            result[name] = value
    return result


def full_tuple(stream: str, row: Mapping[str, Any]) -> MarketTuple:
    """Every field of a row, canonical, in schema order: what two readers of one record must agree on."""
    return tuple(canonical(stream, row).values())


@dataclass(frozen=True)
class KafkaRecord:
    """One record of a topic: where it is, its key, its value's bytes and the value decoded by Apache avro."""

    partition: int
    offset: int
    key: bytes | None
    raw_value: bytes
    value: dict[str, Any]


def apache_decoder(wire_format: str, registry: str | None) -> Any:
    """A function (schema name, value bytes) -> dict decoding with Apache avro in the given wire format."""
    writers: dict[int, avro.schema.Schema] = {}

    def decode_value(schema_name: str, value: bytes) -> dict[str, Any]:
        if wire_format != "confluent":
            return decode(apache_schema(schema_name), value[FRAMING_BYTES[wire_format] :])
        assert value[0] == 0, "confluent magic byte"
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in writers:
            with urlopen(f"{registry}/schemas/ids/{schema_id}") as response:  # noqa: S310 (the local registry)
                writers[schema_id] = avro.schema.parse(json.loads(response.read())["schema"])
        return decode(writers[schema_id], value[5:])

    return decode_value


def engine_rows(stream: str, rows: list[Mapping[str, Any]]) -> Counter[MarketTuple]:
    """An engine's rows as counted canonical tuples of every field."""
    return Counter(full_tuple(stream, row) for row in rows)
