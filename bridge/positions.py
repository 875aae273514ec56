"""The spool position Kafka holds for exactly-once delivery: a consumer-group offset committed in the transaction.

Each transaction that carries spool records also commits, with ``send_offsets_to_transaction``
(Kafka's TxnOffsetCommit, the mechanism Kafka Streams and Flink rely on), one offset: the
highest spool offset the transaction holds, for partition 0 of ``kafka.topics.offsets`` and the
consumer group ``<transactional id>@<spool id>`` (:func:`position_group`). The records and the
offset commit or abort together, so the group's committed offset says exactly which spool
records are in Kafka. The group has no members; ``kafka-consumer-groups.sh --describe`` shows
it like any other.

Why an offset and not a record on a topic (the first design): a record is readable with
``read_committed`` only below the partition's last stable offset, which any transaction left
open on that shared partition holds back, whoever wrote it; a replica killed mid-transaction
held every other bridge's start for up to the transaction timeout, and (measured on Kafka 4.4
after a broker restart) sometimes much longer. A committed offset is answered by the group
coordinator without regard to other producers' transactions.

At start the bridge's producer has already fenced any earlier instance of its transactional id
(Kafka answers InitProducerId only once that instance's last transaction is complete, its
markers written), so the offset read then is final, and it outranks the spool's own checkpoint
of what Kafka acknowledged (:func:`resumption`): a broker can lose a transaction it acknowledged
(measured on Kafka 4.4 with one broker stopped by SIGTERM in the middle of commits: in about one
stop in five, the last acknowledged transaction was gone after the restart, and with it the
records and the offset).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bridge.config import KafkaConfig
from bridge.kafka_connection import connection_options

POSITION_PARTITION = 0


def position_group(transactional_id: str, spool: str) -> str:
    """The consumer group whose committed offset is ``spool``'s position under ``transactional_id``.

    Keyed by the spool too: a shard's spool may be delivered under its owner's id and, once the
    shard moved, under a drain id by the replica that still holds it; and a spool directory made
    anew must not inherit the offsets of the one it replaced.
    """
    return f"{transactional_id}@{spool}"


def position_partition(config: KafkaConfig) -> TopicPartition:
    """The partition the position offsets are committed for."""
    return TopicPartition(config.topics.offsets, POSITION_PARTITION)


@dataclass(frozen=True, slots=True)
class Resumption:
    """Where delivery resumes at start, and what Kafka turned out not to hold."""

    position: int
    """Everything up to this spool offset is in Kafka: delivery starts after it."""
    rewound: int
    """Records the spool's checkpoint counted as acknowledged that Kafka's committed position does not cover."""
    gone: int
    """Of those, how many the spool no longer holds (segments are deleted once acknowledged): lost."""


def resumption(committed: int | None, checkpoint: int, oldest_kept: int) -> Resumption:
    """Resume after Kafka's committed position; after the spool's checkpoint only when Kafka has none.

    Args:
        committed: the position Kafka holds for the spool, ``None`` when it holds none (a first
            run, at-least-once delivery, or group offsets expired after ``offsets.retention.minutes``).
        checkpoint: the highest offset the spool recorded as acknowledged by Kafka.
        oldest_kept: the oldest offset still on disk (0 when there is none).
    """
    if committed is None:
        return Resumption(checkpoint, 0, 0)
    first_kept = oldest_kept or checkpoint + 1
    rewound = max(checkpoint - committed, 0)
    gone = max(min(checkpoint, first_kept - 1) - committed, 0)
    return Resumption(committed, rewound, gone)


async def committed_position(config: KafkaConfig, keys: Collection[str], spool: str) -> int:
    """The highest position of ``spool`` committed under any of the transactional ids ``keys`` (0 when none).

    Raises:
        TimeoutError: the group coordinator did not answer within ``kafka.request_timeout_seconds``.
    """
    found = [await _committed(config, position_group(key, spool)) for key in keys]
    return max((offset for offset in found if offset is not None), default=0)


async def _committed(config: KafkaConfig, group: str) -> int | None:
    timeout = config.request_timeout_seconds
    consumer = AIOKafkaConsumer(**connection_options(config), group_id=group, enable_auto_commit=False)
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        offset: int | None = await asyncio.wait_for(consumer.committed(position_partition(config)), timeout)
        return offset
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), timeout)
