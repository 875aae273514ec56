"""The spool position Kafka holds for exactly-once delivery (in the spirit of Kafka Connect's offsets topic, KIP-618).

Each transaction that carries spool records also writes one *position record* to
``kafka.topics.offsets`` (compacted, one partition): key the transactional id, value
``{"offset": N, ...}``, the highest spool offset the transaction holds. Both commit or neither
does, so the last committed position record says exactly which spool records are in Kafka. At
start the bridge reads it back with ``isolation.level=read_committed`` (after its producer has
fenced any earlier instance, whose open transaction is then aborted) and replays only what
follows.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bridge.config import KafkaConfig
from bridge.kafka_connection import connection_options

POSITION_PARTITION = 0


def position_value(offset: int, spool: str, run_id: str, at: datetime) -> bytes:
    """The value of a position record: the offset, the spool it counts in, the run that wrote it."""
    document = {"offset": offset, "spool": spool, "run_id": run_id, "committed_at": at.astimezone(UTC).isoformat()}
    return orjson.dumps(document)


def offset_of(value: bytes | None, spool: str) -> int | None:
    """The offset in a position record of ``spool``, or ``None`` for a value that is not one (or another spool's)."""
    if value is None:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("spool") != spool:
        return None
    offset = document.get("offset")
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else None


async def committed_position(config: KafkaConfig, topic: str, key: str, spool: str) -> int:
    """The highest offset of ``spool`` committed under ``key`` (0 when none); reads the whole (compacted) partition.

    A position written for another spool (a directory lost and made anew under the same
    transactional id) counts as none: its offsets say nothing about this spool's records.

    Raises:
        TimeoutError: the broker did not answer within ``kafka.request_timeout_seconds``.
    """
    consumer = AIOKafkaConsumer(
        **connection_options(config),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    partition = TopicPartition(topic, POSITION_PARTITION)
    timeout = config.request_timeout_seconds
    await asyncio.wait_for(consumer.start(), timeout)
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await asyncio.wait_for(consumer.end_offsets([partition]), timeout))[partition]
        wanted = key.encode()
        found = 0
        while await consumer.position(partition) < end:
            batch = await asyncio.wait_for(consumer.getmany(partition, timeout_ms=500), timeout)
            for record in batch.get(partition, []):
                if record.key == wanted:
                    found = offset_of(record.value, spool) or 0
        return found
    finally:
        await consumer.stop()
