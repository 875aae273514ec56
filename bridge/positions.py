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
import logging
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bridge.config import KafkaConfig
from bridge.kafka_connection import connection_options

POSITION_PARTITION = 0

log = logging.getLogger(__name__)


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


async def committed_position(config: KafkaConfig, topic: str, key: str, spool: str, *, settle_seconds: float) -> int:
    """The highest offset of ``spool`` committed under ``key`` (0 when none); reads the whole (compacted) partition.

    A position written for another spool (a directory lost and made anew under the same
    transactional id) counts as none: its offsets say nothing about this spool's records.

    ``settle_seconds`` bounds the wait for transactions open on the partition to end (see
    :func:`_settled_end`): the transaction timeout and a request timeout.

    Raises:
        TimeoutError: the broker did not answer within ``kafka.request_timeout_seconds``, or an
            open transaction did not end within ``settle_seconds``.
    """
    partition = TopicPartition(topic, POSITION_PARTITION)
    timeout = config.request_timeout_seconds
    end = await _settled_end(config, partition, settle_seconds)
    consumer = AIOKafkaConsumer(
        **connection_options(config),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    await asyncio.wait_for(consumer.start(), timeout)
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
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


async def _settled_end(config: KafkaConfig, partition: TopicPartition, settle_seconds: float) -> int:
    """The partition's end once every transaction open on it now has ended (committed or aborted).

    The last stable offset stops before an open transaction. Right after this producer fenced an
    earlier instance, that instance's last transaction may still be completing (a commit under
    way is finished by the coordinator, its markers written a moment later): read only up to the
    twice. So wait until the last stable offset reaches the high watermark seen first.

    The partition is shared by every bridge writing to this offsets topic. A bridge killed
    mid-transaction whose id nobody takes over leaves its transaction open until the broker
    aborts it (``delivery.transaction_timeout_seconds``), and the wait lasts that long: it is
    logged, so a slow start says why.

    Raises:
        TimeoutError: the transactions did not end within ``settle_seconds``.
    """
    timeout = config.request_timeout_seconds
    options = {**connection_options(config), "enable_auto_commit": False, "group_id": None}
    uncommitted = AIOKafkaConsumer(**options, isolation_level="read_uncommitted")
    committed = AIOKafkaConsumer(**options, isolation_level="read_committed")
    await asyncio.wait_for(uncommitted.start(), timeout)
    try:
        await asyncio.wait_for(committed.start(), timeout)
        high = (await asyncio.wait_for(uncommitted.end_offsets([partition]), timeout))[partition]
        waited = 0
        async with asyncio.timeout(settle_seconds):
            while True:  # Kafka has no event for it: the end offset is polled
                stable: int = (await committed.end_offsets([partition]))[partition]
                if stable >= high:
                    return stable
                waited += 1
                if waited == 20:
                    log.warning(
                        "%s: a transaction left open (by a process stopped mid-transaction?) holds back the "
                        "committed positions; waiting up to %gs for the broker to abort it",
                        partition.topic,
                        settle_seconds,
                    )
                await asyncio.sleep(0.1)
    finally:
        for consumer in (committed, uncommitted):
            await consumer.stop()
