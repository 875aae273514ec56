"""Who owns which shard, through Kafka: the consumer group, and the control records of each shard.

Group mode uses Kafka's own group coordinator, not one of ours: every replica joins one consumer
group on the control topic, whose partitions are the shards; the partitions Kafka assigns to a
replica are the shards it owns. The members' assignor is aiokafka's sticky one (a rebalance
moves as few shards as it can), membership is static (``group.instance.id`` = the pod name:
a quick restart gets its shards back without a rebalance), and a replica that stops
heartbeating for ``sharding.session_timeout_seconds`` loses its shards to the others. The
consumer reads nothing (its partitions are paused): it is polled only to stay in the group.

Kafka says who owns a shard, not when its previous owner let go, so owners also write control
records (:mod:`bridge.protocol.handoff`) to their shard's partition: heartbeats, and a release
once they have flushed; :class:`ControlChannel` writes and reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.structs import TopicPartition

from bridge.config_kafka import KafkaConfig
from bridge.config_sharding import ShardingConfig
from bridge.errors import ConfigError
from bridge.kafka_connection import connection_options
from bridge.protocol.handoff import ControlRecord, ShardState
from bridge.protocol.shards import shard_name

log = logging.getLogger(__name__)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Passes each assignment on; the replica applies it in its own task (a callback must not block the group)."""

    def __init__(self, membership: GroupMembership) -> None:
        self._membership = membership

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to do yet: with eager rebalancing every partition is revoked, most come straight back."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Record the new assignment and wake the replica."""
        self._membership.assigned({partition.partition for partition in assigned})


class GroupMembership:
    """This replica's membership of the sharding group; :attr:`owned` is what Kafka assigned it."""

    def __init__(self, kafka: KafkaConfig, sharding: ShardingConfig) -> None:
        self._kafka = kafka
        self._sharding = sharding
        self.owned: frozenset[int] = frozenset()
        self.changed = asyncio.Event()
        self.generation = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def assigned(self, shards: set[int]) -> None:
        """Kafka assigned ``shards`` (the whole assignment, not a difference)."""
        self.owned = frozenset(shards)
        self.generation += 1
        self.changed.set()

    async def start(self) -> None:
        """Join the group; the first assignment arrives on :attr:`changed`.

        Raises:
            TimeoutError: the brokers did not answer within the request timeout.
        """
        sharding = self._sharding
        session_ms = int(sharding.session_timeout_seconds * 1000)
        consumer = AIOKafkaConsumer(
            **connection_options(self._kafka),
            group_id=sharding.group,
            group_instance_id=sharding.instance,
            partition_assignment_strategy=(StickyPartitionAssignor,),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 5, 100),
            rebalance_timeout_ms=int((sharding.handoff_timeout_seconds + 30) * 1000),
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await asyncio.wait_for(consumer.start(), self._kafka.request_timeout_seconds)
        consumer.subscribe([sharding.control_topic], listener=_Listener(self))
        self._consumer = consumer
        self._task = asyncio.create_task(self._poll(consumer), name="sharding-group")

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        """Stay in the group: poll (with every partition paused, nothing is fetched)."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await consumer.getmany(timeout_ms=1000)
            assignment = consumer.assignment()
            if assignment:
                consumer.pause(*assignment)

    async def stop(self) -> None:
        """Leave: a static member's shards stay assigned to it until its session times out."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)


class ControlChannel:
    """Writes this replica's control records and reads the last one of a shard (see the module docstring)."""

    def __init__(self, kafka: KafkaConfig, sharding: ShardingConfig, run_id: str) -> None:
        self._kafka = kafka
        self._sharding = sharding
        self._run_id = run_id
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect, and check the control topic has one partition per shard.

        Raises:
            ConfigError: the control topic has another number of partitions than ``sharding.shards``.
            TimeoutError: the brokers did not answer within the request timeout.
        """
        timeout = self._kafka.request_timeout_seconds
        self._producer = AIOKafkaProducer(**connection_options(self._kafka), acks="all", enable_idempotence=True)
        await asyncio.wait_for(self._producer.start(), timeout)
        self._reader = AIOKafkaConsumer(**connection_options(self._kafka), group_id=None, enable_auto_commit=False)
        await asyncio.wait_for(self._reader.start(), timeout)
        topic = self._sharding.control_topic
        partitions: set[int] = await asyncio.wait_for(self._producer.partitions_for(topic), timeout)
        if len(partitions) != self._sharding.shards:
            raise ConfigError(
                f"sharding.shards: {self._sharding.shards} shards, but the control topic {topic!r} has "
                f"{len(partitions)} partitions; every replica must use the shard count the topic was created "
                f"with (or delete the topic while no replica runs)"
            )

    async def announce(self, shard: int, state: ShardState, connections: dict[str, str], at: datetime) -> None:
        """Write that this replica owns (or has released) ``shard``, as of ``at``."""
        assert self._producer is not None
        record = ControlRecord(shard, self._sharding.instance, self._run_id, state, at, connections)
        await self._producer.send_and_wait(
            self._sharding.control_topic, record.encode(), key=shard_name(shard).encode(), partition=shard
        )

    async def last(self, shards: Collection[int]) -> dict[int, tuple[ControlRecord | None, int]]:
        """Each shard's last control record (``None``: never owned) and its partition's end offset."""
        reader = self._reader
        assert reader is not None
        partitions = {shard: TopicPartition(self._sharding.control_topic, shard) for shard in shards}
        ends = await reader.end_offsets(list(partitions.values()))
        found: dict[int, tuple[ControlRecord | None, int]] = {}
        waiting = {}
        for shard, partition in partitions.items():
            found[shard] = (None, ends[partition])
            if ends[partition] > 0:
                waiting[partition] = shard
        if not waiting:
            return found
        reader.assign(list(waiting))
        for partition in waiting:
            reader.seek(partition, ends[partition] - 1)
        async with asyncio.timeout(self._kafka.request_timeout_seconds):
            while waiting:
                batch = await reader.getmany(*waiting, timeout_ms=500)
                for partition, messages in batch.items():
                    if messages and partition in waiting:
                        shard = waiting.pop(partition)
                        found[shard] = (ControlRecord.decode(messages[-1].value), ends[partition])
        return found

    async def released(self, offsets: dict[int, int], timeout: float) -> dict[int, ControlRecord]:
        """The ``released`` records written at or after each shard's offset within ``timeout`` seconds."""
        reader = self._reader
        assert reader is not None
        topic = self._sharding.control_topic
        waiting = {TopicPartition(topic, shard): shard for shard in offsets}
        reader.assign(list(waiting))
        for partition, shard in waiting.items():
            reader.seek(partition, offsets[shard])
        found: dict[int, ControlRecord] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while waiting:
                    batch = await reader.getmany(*waiting, timeout_ms=200)
                    for partition, messages in batch.items():
                        for message in messages:
                            record = ControlRecord.decode(message.value)
                            if record is not None and record.state is ShardState.RELEASED and partition in waiting:
                                found[waiting.pop(partition)] = record
        return found

    async def stop(self) -> None:
        """Flush and close."""
        for client in (self._producer, self._reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 10)


def now() -> datetime:
    """The wall clock, aware UTC (control records carry it)."""
    return datetime.now(UTC)
