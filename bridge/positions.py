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
markers written), so the offset read then is normally final. When it is behind the spool's own
checkpoint of what Kafka acknowledged, the records in the topics decide (:func:`resumption`,
:func:`highest_in_topics`): a broker can lose part of a transaction it acknowledged (measured on
Kafka 4.4.0 with its only broker stopped by SIGTERM mid-commit: 3 stops in 25 lost the last
acknowledged transaction; its coordinator drops commit markers while the partitions have no
leader, see ``scripts/kafka-local``), and a position committed under a drain id may not be applied yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bridge.config_kafka import KafkaConfig
from bridge.kafka_connection import connection_options
from bridge.serialize import KafkaMessage

POSITION_PARTITION = 0
SEARCH_MARGIN_MS = 10_000
"""How far before the oldest candidate's receipt the topics are searched (record times are receipt times)."""
SEARCH_WINDOW_RECORDS = 50_000
"""The checkpoint's last records that are looked for (a broker loses the last transactions, not older ones)."""
SEARCH_MAX_RECORDS = 1_000_000
"""Records read at most while searching; past that the search gives up and the checkpoint is trusted."""


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
    """Where delivery resumes at start, and what the topics turned out not to hold."""

    position: int
    """Everything up to this spool offset is in Kafka: delivery starts after it."""
    rewound: int
    """Records the spool's checkpoint counted as acknowledged that the topics do not hold: delivered again."""
    gone: int
    """Of those, how many the spool no longer holds (segments are deleted once acknowledged): lost."""
    confirmed: bool = True
    """False when the topics could not be read in time and the checkpoint was taken on trust."""


def resumption(committed: int, checkpoint: int, oldest_kept: int, found: int | None) -> Resumption:
    """Resume after what the topics hold, when Kafka's committed position and the spool's checkpoint disagree.

    Kafka 4.4 with one broker stopped by SIGTERM mid-commit was seen to lose either side of a
    transaction it had acknowledged: its records and offset both (the checkpoint is then ahead
    of what Kafka holds), or only the offset's commit marker (the records are there and the
    committed offset is behind them). The records decide.

    Args:
        committed: the position Kafka's group offsets hold for the spool (0 when none).
        checkpoint: the highest offset the spool recorded as acknowledged by Kafka.
        oldest_kept: the oldest offset still on disk (0 when there is none).
        found: the highest offset after ``committed`` whose record the topics hold (``committed``
            when none is), or ``None`` when the topics could not be read: then the checkpoint is trusted.
    """
    if checkpoint <= committed:
        return Resumption(committed, 0, 0)
    if found is None:
        return Resumption(checkpoint, 0, 0, confirmed=False)
    position = min(max(committed, found), checkpoint)
    first_kept = oldest_kept or checkpoint + 1
    gone = max(min(checkpoint, first_kept - 1) - position, 0)
    return Resumption(position, checkpoint - position, gone)


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


async def highest_in_topics(
    config: KafkaConfig, candidates: Mapping[TopicPartition, Sequence[tuple[int, KafkaMessage]]], timeout: float
) -> int | None:
    """The highest spool offset among ``candidates`` whose record the topics hold, committed (0 when none is).

    Each partition is read with ``read_committed`` from shortly before its oldest candidate was
    received, up to where it ended when the search began; a record counts as found when its
    value bytes are there (a value names its connection and sequence, so it is unique). Open
    transactions hold the last stable offset back, so this waits for it to pass that end.

    Returns ``None`` when Kafka could not say within ``timeout`` seconds (brokers down, or a
    transaction left open on one of the partitions), or the search read more than ``SEARCH_MAX_RECORDS``.
    """
    if not candidates:
        return 0
    committed = AIOKafkaConsumer(**connection_options(config), isolation_level="read_committed", group_id=None,
                                 enable_auto_commit=False)  # fmt: skip
    written = AIOKafkaConsumer(**connection_options(config), group_id=None, enable_auto_commit=False)
    try:
        async with asyncio.timeout(timeout):
            await committed.start()
            await written.start()
            return await _search(committed, written, candidates)
    except TimeoutError:
        return None
    finally:
        for consumer in (committed, written):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), config.request_timeout_seconds)


async def _search(
    committed: AIOKafkaConsumer,
    written: AIOKafkaConsumer,
    candidates: Mapping[TopicPartition, Sequence[tuple[int, KafkaMessage]]],
) -> int | None:
    partitions = list(candidates)
    committed.assign(partitions)
    ends = await written.end_offsets(partitions)
    while True:
        stable = await committed.end_offsets(partitions)
        if all(stable[tp] >= ends[tp] for tp in partitions):
            break
        await asyncio.sleep(0.2)  # an open transaction: its markers are on their way, or its timeout is
    since = {
        tp: int(min(message.received_time for _, message in entries).timestamp() * 1000) - SEARCH_MARGIN_MS
        for tp, entries in candidates.items()
    }
    starts = await committed.offsets_for_times(since)
    wanted = {tp: {message.value: offset for offset, message in entries} for tp, entries in candidates.items()}
    found, read = 0, 0
    active: set[TopicPartition] = set()
    for tp in partitions:
        start = starts.get(tp)
        if start is not None and start.offset < ends[tp]:
            committed.seek(tp, start.offset)
            active.add(tp)
    while active:
        batches = await committed.getmany(*active, timeout_ms=200, max_records=10_000)
        for tp, records in batches.items():
            for record in records:
                offset = wanted[tp].pop(record.value, None) if record.value is not None else None
                found = max(found, offset or 0)
            read += len(records)
        if read > SEARCH_MAX_RECORDS:
            return None
        active = {tp for tp in active if wanted[tp] and await committed.position(tp) < ends[tp]}
    return found
