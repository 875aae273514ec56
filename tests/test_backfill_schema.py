"""A kline's source and a gap's backfill report survive the Avro round trip, read back with Apache avro."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bridge.records import (
    BackfillItem,
    BackfillReport,
    BackfillStatus,
    Cause,
    GapRecord,
    KlineRecord,
    Provenance,
    RecordSource,
    Stream,
)
from bridge.serialize import RecordSerializer, TopicMap
from tests.kafka_tools import apache_schema, decode

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SERIALIZER = RecordSerializer(TopicMap({Stream.KLINE: "k"}, "dlq", "gaps"))


def bar(source: RecordSource) -> KlineRecord:
    """One 1m bar."""
    one = Decimal("1.5")
    return KlineRecord(
        "BTCUSDT", "1m", T0, one, one, one, one, one, one, None, None,
        Provenance("crypto", "crypto-0#2@run/rest", 1, T0), source,
    )  # fmt: skip


def test_kline_source_is_written_and_old_records_read_as_ws() -> None:
    """source carries WS or REST; a record built without it is WS."""
    schema = apache_schema("kline")
    assert decode(schema, SERIALIZER.serialize(bar(RecordSource.REST)).value)["source"] == "REST"
    assert decode(schema, SERIALIZER.serialize(bar(RecordSource.WS)).value)["source"] == "WS"
    default = KlineRecord(*(getattr(bar(RecordSource.REST), name) for name in KlineRecord.__slots__[:-1]))
    assert default.source is RecordSource.WS


def test_gap_follow_up_carries_the_backfill_report() -> None:
    """The follow-up gap record says what was filled and what could not be (no_history for trades)."""
    report = BackfillReport(
        BackfillStatus.PARTIAL,
        3,
        (
            BackfillItem("BTCUSDT", Stream.KLINE, "1m", 3, None),
            BackfillItem("ETHUSDT", Stream.KLINE, "1m", 0, "rate_limited"),
            BackfillItem("BTCUSDT", Stream.TRADE, None, 0, "no_history"),
        ),
        T0,
        T0,
    )
    gap = GapRecord(
        "crypto", "crypto-0", ("BTCUSDT",), (Stream.KLINE,), T0, T0, Cause.CLOSED, None, True, "a", "b", report
    )
    message = SERIALIZER.serialize_gap(gap)
    assert message is not None
    datum = decode(apache_schema("gap"), message.value)
    assert datum["backfill"]["status"] == "partial"
    assert datum["backfill"]["bars"] == 3
    assert [item["reason"] for item in datum["backfill"]["items"]] == [None, "rate_limited", "no_history"]
    plain = SERIALIZER.serialize_gap(GapRecord(*[getattr(gap, f) for f in GapRecord.__slots__][:-1]))
    assert plain is not None
    assert decode(apache_schema("gap"), plain.value)["backfill"] is None
