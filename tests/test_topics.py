"""Topics at start against a real broker: what the creation line says, new topics take records at once; error texts."""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError

from bridge.config import parse_config
from bridge.config_kafka import KafkaConfig
from bridge.kafka_connection import describe_error
from bridge.topics import ensure_topics
from tests.harness import topics

PARTITIONS = 6


def kafka_section(bootstrap: str) -> KafkaConfig:
    """A validated ``kafka`` section with fresh topic names."""
    document = {
        "source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics(), "topic_creation": {"partitions": PARTITIONS}},
    }
    return parse_config(document, {}).kafka


async def test_new_topics_take_records_at_once_without_not_leader_warnings(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Right after ensure_topics creates topics, a produce to each of their partitions succeeds the first time:
    no "NotLeaderForPartitionError ... retrying" warning from aiokafka at a normal start."""
    kafka = kafka_section(kafka_bootstrap)
    names = [kafka.topics.trade, kafka.topics.depth, kafka.topics.kline, kafka.topics.dead_letter]
    caplog.set_level(logging.WARNING)
    assert await ensure_topics(kafka, names) == names
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for topic in names:
            for partition in range(PARTITIONS):
                await producer.send_and_wait(topic, b"v", partition=partition)
    finally:
        await producer.stop()
    assert [record.getMessage() for record in caplog.records] == []


async def test_the_creation_line_names_what_was_created_and_what_existed(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line names the topics created and those that already existed, so it matches the "producing to" line."""
    kafka = kafka_section(kafka_bootstrap)
    existing, new = kafka.topics.trade, kafka.topics.dead_letter
    await ensure_topics(kafka, [existing])
    caplog.set_level(logging.INFO, logger="bridge.topics")
    caplog.clear()
    assert await ensure_topics(kafka, [existing, new]) == [new]
    lines = [record.getMessage() for record in caplog.records if record.name == "bridge.topics"]
    assert lines == [
        f"created topics {new} ({PARTITIONS} partitions, replication broker default); {existing} already existed"
    ]


def test_library_errors_name_their_class_once() -> None:
    """An error's class is named once: aiokafka's texts already carry theirs, so it is not prefixed again."""
    assert describe_error(KafkaConnectionError("Unable to bootstrap")) == "KafkaConnectionError: Unable to bootstrap"
    assert describe_error(NotLeaderForPartitionError()) == "[Error 6] NotLeaderForPartitionError"
    assert describe_error(OSError("no route")) == "OSError: no route"
    assert describe_error(TimeoutError()) == "TimeoutError"


async def test_a_compacted_state_topic_has_one_partition_and_is_waited_for_as_such(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The offsets topic is created compacted with one partition, and the leader wait asks for that one only."""
    kafka = kafka_section(kafka_bootstrap)
    offsets = kafka.topics.offsets
    caplog.set_level(logging.DEBUG, logger="bridge.topics")
    assert await ensure_topics(kafka, [kafka.topics.trade, offsets], compacted={offsets: 1}) == [
        kafka.topics.trade,
        offsets,
    ]
    assert any(f"leaders of {PARTITIONS + 1} new partitions ready" in record.getMessage() for record in caplog.records)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        assert await producer.partitions_for(offsets) == {0}
    finally:
        await producer.stop()
