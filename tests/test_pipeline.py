"""The publisher (the feed's emit port): outcomes in, messages out, with no broker needed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import orjson
from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from bridge.pipeline import Publisher
from bridge.protocol import GapClosed, Record, normalize_trade
from bridge.records import Cause, DeadLetterStage, GapRecord, Stream
from bridge.serialize import KafkaMessage, RecordSerializer, TopicMap
from tests.kafka_tools import apache_schema, decode
from tests.protocol.frames import PROVENANCE, RECEIVED, fixture

TRADE = fixture("push_trade.json")


def publisher(gap_topic: str | None = "t.gaps") -> tuple[Publisher, list[KafkaMessage], BridgeMetrics]:
    """A publisher whose sink is a list."""
    sent: list[KafkaMessage] = []

    async def send(message: KafkaMessage) -> None:
        sent.append(message)

    metrics = BridgeMetrics(CollectorRegistry())
    serializer = RecordSerializer(TopicMap({Stream.TRADE: "t.trades"}, "t.dlq", gap_topic))
    return Publisher(serializer, send, metrics), sent, metrics


def gap() -> GapRecord:
    """A resolved two-second gap caused by a 513."""
    return GapRecord(
        "crypto", "crypto-0", ("BTCUSDT",), (Stream.TRADE,), RECEIVED, RECEIVED + timedelta(seconds=2),
        Cause.VENDOR_ERROR, 513, True, "crypto-0#1@r", "crypto-0#2@r",
    )  # fmt: skip


async def test_a_record_is_serialized_for_its_topic() -> None:
    """A Record becomes one message on the stream's topic, keyed by symbol."""
    subject, sent, _ = publisher()
    await subject.publish(Record(normalize_trade(orjson_data(TRADE), PROVENANCE), TRADE))
    (message,) = sent
    assert (message.topic, message.key) == ("t.trades", b"BTCUSDT")


async def test_a_value_the_schema_cannot_carry_becomes_a_serialize_dead_letter() -> None:
    """A price with 19 fractional digits is never rounded: the frame goes to the dead letters, stage serialize."""
    subject, sent, metrics = publisher()
    record = replace(normalize_trade(orjson_data(TRADE), PROVENANCE), price=Decimal("1.0000000000000000001"))
    await subject.publish(Record(record, TRADE))
    (message,) = sent
    letter = decode(apache_schema("dead_letter"), message.value)
    assert message.topic == "t.dlq"
    assert (letter["reason"], letter["stage"], letter["raw"]) == (
        "decimal_not_representable", DeadLetterStage.SERIALIZE.value, TRADE,
    )  # fmt: skip
    count = metrics.registry.get_sample_value(
        "infoway_bridge_dead_letters_total", {"reason": "decimal_not_representable"}
    )
    assert count == 1


async def test_a_gap_is_counted_and_published_with_its_code() -> None:
    """A closed gap adds its seconds to the metric and goes to the gap topic with cause and code."""
    subject, sent, metrics = publisher()
    await subject.publish(GapClosed(gap()))
    (message,) = sent
    value = decode(apache_schema("gap"), message.value)
    assert (message.topic, message.key) == ("t.gaps", b"crypto-0")
    assert (value["cause"], value["code"], value["resolved"]) == ("vendor_error", 513, True)
    assert metrics.registry.get_sample_value("infoway_bridge_gap_seconds_total", {"business": "crypto"}) == 2.0


async def test_without_a_gap_topic_a_gap_is_only_counted() -> None:
    """With kafka.topics.gap unset nothing is sent, but the gap still counts."""
    subject, sent, metrics = publisher(gap_topic=None)
    await subject.publish(GapClosed(gap()))
    assert sent == []
    assert metrics.registry.get_sample_value("infoway_bridge_gap_seconds_total", {"business": "crypto"}) == 2.0


def orjson_data(frame: str) -> dict[str, object]:
    """The data object of a push frame."""
    data: dict[str, object] = orjson.loads(frame)["data"]
    return data
