"""The Kafka side: per-partition lanes that batch records into an idempotent aiokafka producer.

Theory of operation
-------------------
:meth:`KafkaSink.put` takes a slot of the bounded capacity (``kafka.queue_max_records``; it
waits while the bridge holds that many undelivered records: backpressure), picks the partition
the way Kafka's Java client does (murmur2 of the key), and appends the message to that
partition's *lane*. One task per lane takes everything queued there, up to a batch's size,
builds one batch with ``create_batch`` and submits it with ``send_batch``, and waits for that
batch's acknowledgement before building the next. So:

* per-symbol order holds by construction: one partition, one batch in flight, retried in place;
* no future per record (thousands of ``send()`` futures slow aiokafka badly, aio-libs/aiokafka
  #528): one future per batch, and batches grow with the load while a round trip is under way;
* nothing is dropped: a batch leaves its lane only when Kafka acknowledged it, or when Kafka
  refused a record for good (too large, not authorised) and that record went to the
  dead-letter topic with the reason.

aiokafka pitfalls designed around, each exercised by a test against a real broker:

* with idempotence on, waits can hang while the broker is down (#1101): every wait here is
  bounded (``delivery_timeout_seconds`` per batch, ``flush_timeout_seconds`` at shutdown), and a
  batch that timed out is retried, not lost;
* ``OutOfOrderSequenceNumber`` kills the producer's sender task for good (#1017): the sink sees
  the dead producer, builds a new one and resends the same batch, still in order.

A retried batch may have been written by the first attempt (the broker acknowledged it, the
answer was lost), so a retry after a timeout can duplicate records: at-least-once. Retries that
aiokafka performs itself, within one producer, are deduplicated by the broker (idempotence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from bridge.config import KafkaConfig
from bridge.errors import KafkaError
from bridge.kafka_connection import connection_options, describe_error, producer_is_dead, stop_quietly
from bridge.metrics import BridgeMetrics
from bridge.records import DeadLetter, DeadLetterStage
from bridge.serialize import KafkaMessage, RecordSerializer

log = logging.getLogger(__name__)

_PERMANENT_FAILURES: dict[type[BaseException], str] = {
    MessageSizeTooLargeError: "record_too_large",
    RecordTooLargeError: "record_too_large",
    RecordListTooLargeError: "record_too_large",
    TopicAuthorizationFailedError: "topic_authorization_failed",
}
# Errors after which the producer's sender task is gone: only a new producer can send again.
_FATAL_TO_PRODUCER: tuple[type[BaseException], ...] = (OutOfOrderSequenceNumber, ProducerFenced)
_MAX_RETRY_DELAY = 30.0


@dataclass(slots=True)
class _PartitionLane:
    """The records waiting for one partition, and the task that sends them in order."""

    partition: TopicPartition
    messages: deque[KafkaMessage] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class KafkaSink:
    """Owns the producer, the per-partition lanes and their tasks (see the module docstring).

    Args:
        config: the ``kafka`` section.
        serializer: builds dead letters for records Kafka refuses for good.
        metrics: where deliveries, failures and lag are counted.
        wall_clock: the time used to measure lag at acknowledgement (injected for tests).
    """

    def __init__(
        self,
        config: KafkaConfig,
        serializer: RecordSerializer,
        metrics: BridgeMetrics,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._serializer = serializer
        self._metrics = metrics
        self._wall_clock = wall_clock
        self._producer: AIOKafkaProducer | None = None
        self._producer_generation = 0
        self._replace_lock = asyncio.Lock()
        self._capacity = asyncio.Semaphore(config.queue_max_records)
        self._lanes: dict[TopicPartition, _PartitionLane] = {}
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        self._pending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self.failure: BaseException | None = None
        self.broken = asyncio.Event()
        """Set when the sink can no longer deliver (a bug); the application stops on it."""
        self.delivered = 0
        self.failed = 0
        self.producers_replaced = 0

    @property
    def running(self) -> bool:
        """Whether a producer is started and the sink accepts records."""
        return self._producer is not None and not self._closing

    @property
    def pending(self) -> int:
        """Records handed to the sink and not yet acknowledged (or dead-lettered)."""
        return self._pending

    def _options(self) -> dict[str, Any]:
        config = self._config
        return {
            **connection_options(config),
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": None if config.compression == "none" else config.compression,
            "linger_ms": config.linger_ms,
            "max_batch_size": config.max_batch_bytes,
            "max_request_size": max(config.max_batch_bytes, 1 << 20),
        }

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(**self._options())
        try:
            await asyncio.wait_for(producer.start(), self._config.request_timeout_seconds)
        except BaseException:
            await stop_quietly(producer)
            raise
        self._producer_generation += 1
        return producer

    async def start(self) -> None:
        """Connect the producer, bounded by the request timeout.

        Raises:
            KafkaError: the brokers did not answer in time; the message names them.
        """
        try:
            self._producer = await self._start_producer()
        except (TimeoutError, KafkaConnectionError, AIOKafkaError, OSError) as exc:
            raise KafkaError(
                f"cannot reach Kafka at {self._config.bootstrap_servers} "
                f"within {self._config.request_timeout_seconds:g}s ({type(exc).__name__}): "
                "check kafka.bootstrap_servers or KAFKA_BOOTSTRAP_SERVERS"
            ) from exc

    async def put(self, message: KafkaMessage) -> None:
        """Queue one message for its partition; waits while the sink is full (backpressure).

        Raises:
            KafkaError: the sink has failed (see ``failure``), so nothing queued could be delivered.
        """
        if self.failure is not None:
            raise KafkaError(f"the Kafka sink has failed: {self.failure}")
        await self._capacity.acquire()
        try:
            partition = TopicPartition(message.topic, await self._partition_of(message))
        except BaseException:
            self._capacity.release()
            raise
        self._enqueue(partition, message)

    def _enqueue(self, partition: TopicPartition, message: KafkaMessage) -> None:
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = _PartitionLane(partition)
            lane.task = asyncio.create_task(
                self._run_lane(lane), name=f"kafka-lane-{partition.topic}-{partition.partition}"
            )
        lane.messages.append(message)
        lane.ready.set()
        self._pending += 1
        self._drained.clear()
        self._metrics.queue_depth.set(self._pending)

    def _lane_ended(self, task: asyncio.Task[None]) -> None:
        """A lane ends only when cancelled at close; any other end is a bug that must not hang the bridge."""
        if task.cancelled() or self.failure is not None:
            return
        error = task.exception()
        self.failure = error if error is not None else RuntimeError(f"{task.get_name()} ended")
        log.critical("the Kafka sink failed (%s); stopping the bridge", describe_error(self.failure))
        self.broken.set()

    async def _partition_of(self, message: KafkaMessage) -> int:
        partitions = self._partitions.get(message.topic)
        if partitions is None:
            partitions = self._partitions[message.topic] = await self._topic_partitions(message.topic)
        chosen: int = self._partitioner(message.key, partitions, partitions)
        return chosen

    async def _topic_partitions(self, topic: str) -> list[int]:
        delay = 0.5
        while True:
            producer = self._producer
            assert producer is not None, "start() the sink first"
            try:
                found = await asyncio.wait_for(producer.partitions_for(topic), self._config.request_timeout_seconds)
                return sorted(found)
            except (TimeoutError, AIOKafkaError) as exc:
                log.warning(
                    "no partition metadata for topic %s (%s); retrying in %.1fs", topic, type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)

    async def _run_lane(self, lane: _PartitionLane) -> None:
        linger = self._config.linger_ms / 1000
        while True:
            while not lane.messages:
                lane.ready.clear()
                await lane.ready.wait()
            if linger:
                await asyncio.sleep(linger)
            batch = self._take(lane)
            await self._send_until_acknowledged(lane.partition, batch)

    def _take(self, lane: _PartitionLane) -> list[KafkaMessage]:
        """As many queued messages as fit one batch (always at least one), oldest first."""
        budget = self._config.max_batch_bytes
        taken = [lane.messages.popleft()]
        size = _record_size(taken[0])
        while lane.messages:
            size += _record_size(lane.messages[0])
            if size > budget:
                break
            taken.append(lane.messages.popleft())
        return taken

    async def _send_until_acknowledged(self, partition: TopicPartition, batch: list[KafkaMessage]) -> None:
        """Send ``batch`` until Kafka acknowledges all of it or refuses its records for good."""
        retry_delay = 0.5
        while batch:
            producer = self._producer
            assert producer is not None
            try:
                sent = await self._send_batch(producer, partition, batch)
            except _FATAL_TO_PRODUCER as exc:
                await self._replace_producer(producer, exc)
                continue
            except tuple(_PERMANENT_FAILURES) as exc:
                await self._refused(partition, batch, exc)
                return
            except (TimeoutError, AIOKafkaError) as exc:
                reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                self._metrics.produce_failures.labels(partition.topic, f"retried_{reason}").inc(len(batch))
                log.warning(
                    "Kafka did not acknowledge %d record(s) for %s[%d] (%s); retrying in %.1fs, in order",
                    len(batch), partition.topic, partition.partition, reason, retry_delay,
                )  # fmt: skip
                if producer_is_dead(producer):
                    await self._replace_producer(producer, exc)
                else:
                    await asyncio.sleep(retry_delay)
                    retry_delay = min(retry_delay * 2, _MAX_RETRY_DELAY)
                continue
            self._acknowledged(partition.topic, batch[:sent])
            batch = batch[sent:]

    async def _send_batch(
        self, producer: AIOKafkaProducer, partition: TopicPartition, batch: list[KafkaMessage]
    ) -> int:
        """Submit as much of ``batch`` as one batch holds and wait for its acknowledgement.

        Returns:
            How many messages, from the front, were in the batch (all of them unless the size
            estimate of :meth:`_take` was short).
        """
        builder = producer.create_batch()
        count = 0
        for message in batch:
            timestamp = int(message.received_time.timestamp() * 1000)
            # aiokafka's C record builder accepts headers only as a list
            headers = list(message.headers)
            if builder.append(timestamp=timestamp, key=message.key, value=message.value, headers=headers) is None:
                break
            count += 1
        builder.close()
        timeout = self._config.request_timeout_seconds
        future = await asyncio.wait_for(
            producer.send_batch(builder, partition.topic, partition=partition.partition), timeout
        )
        await asyncio.wait_for(future, self._config.delivery_timeout_seconds)
        return count

    async def _replace_producer(self, broken: AIOKafkaProducer, cause: BaseException) -> None:
        """Swap a producer whose sender died for a new one; lanes then resend their batch in order."""
        async with self._replace_lock:
            if broken is not self._producer:
                return  # another lane replaced it already
            log.error(
                "the Kafka producer stopped working (%s: %s); replacing it and resending unacknowledged batches",
                type(cause).__name__, cause,
            )  # fmt: skip
            await stop_quietly(broken)
            delay = 0.5
            while True:
                try:
                    self._producer = await self._start_producer()
                    break
                except (TimeoutError, AIOKafkaError, OSError) as exc:
                    log.warning("cannot start a new Kafka producer (%s); retrying in %.1fs", type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_RETRY_DELAY)
            self.producers_replaced += 1
            log.info("Kafka producer replaced (generation %d)", self._producer_generation)

    async def _refused(self, partition: TopicPartition, batch: list[KafkaMessage], error: BaseException) -> None:
        """Kafka refused a batch for good: find the culprit(s) one by one, dead-letter only those."""
        if len(batch) > 1:
            for message in batch:
                await self._send_until_acknowledged(partition, [message])
            return
        (message,) = batch
        reason = _PERMANENT_FAILURES.get(type(error), type(error).__name__)
        self.failed += 1
        self._metrics.produce_failures.labels(message.topic, reason).inc()
        log.error("Kafka refused a record for topic %s for good (%s: %s)", message.topic, type(error).__name__, error)
        if message.stream is not None:
            letter = DeadLetter(
                reason=reason,
                stage=DeadLetterStage.PRODUCE,
                detail=str(error),
                raw=f"{len(message.value)} bytes of Avro for key {message.key!r}",
                received_time=message.received_time,
                business=message.business,
                target_topic=message.topic,
            )
            self._metrics.dead_letters.labels(reason).inc()
            dead = self._serializer.serialize_dead_letter(letter)
            self._enqueue(TopicPartition(dead.topic, await self._partition_of(dead)), dead)
            self._pending -= 1  # the dead letter inherits the refused record's capacity slot
        else:
            self._settle(1)

    def _acknowledged(self, topic: str, batch: list[KafkaMessage]) -> None:
        metrics = self._metrics
        acked = self._wall_clock()
        metrics.records_produced.labels(topic).inc(len(batch))
        self.delivered += len(batch)
        for message in batch:
            if message.stream is None or message.event_time is None:
                continue
            stream = message.stream.value
            business = message.business or ""
            metrics.event_lag.labels(business, stream).observe((acked - message.event_time).total_seconds())
            metrics.pipeline_latency.labels(stream).observe((acked - message.received_time).total_seconds())
        last = batch[-1]
        if last.stream is not None and last.event_time is not None:
            metrics.last_event_timestamp.labels(last.business or "", last.stream.value).set(last.event_time.timestamp())
        self._settle(len(batch))

    def _settle(self, count: int) -> None:
        self._pending -= count
        for _ in range(count):
            self._capacity.release()
        self._metrics.queue_depth.set(self._pending)
        if self._pending <= 0:
            self._drained.set()

    async def close(self, timeout: float | None = None) -> int:
        """Deliver what is queued, then stop the producer; never waits past ``timeout``.

        Returns:
            How many records were still unacknowledged when the deadline passed (0 on a clean close).
        """
        self._closing = True
        deadline = time.monotonic() + (self._config.flush_timeout_seconds if timeout is None else timeout)
        if self._producer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), max(deadline - time.monotonic(), 0.01))
        undelivered = self._pending
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer, max(deadline - time.monotonic(), 1.0))
        if undelivered:
            log.error(
                "%d record(s) were not acknowledged by Kafka within kafka.flush_timeout_seconds (%gs)",
                undelivered,
                self._config.flush_timeout_seconds if timeout is None else timeout,
            )
        return undelivered


def _record_size(message: KafkaMessage) -> int:
    # A record's size in a batch: its bytes plus framing (varints, attributes, headers' names).
    return len(message.value) + len(message.key or b"") + sum(len(k) + len(v) + 4 for k, v in message.headers) + 24
