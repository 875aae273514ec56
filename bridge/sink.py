"""The Kafka side: a bounded queue drained into an idempotent aiokafka producer.

The feed hands messages to :meth:`KafkaSink.put`; one drain task (owned here, cancelled and
awaited on close) passes them to the producer, whose accumulator batches per partition. Every
acknowledgement is observed into the lag metrics at the moment Kafka confirms it.

aiokafka pitfalls designed around:

* with idempotence on, ``stop()`` can wait forever while the broker is down (aio-libs/aiokafka
  #1101): :meth:`KafkaSink.close` bounds the flush and the stop by a deadline, and reports what
  it could not deliver instead of hanging;
* a record Kafka refuses for good (too large, not authorised) is routed to the dead-letter
  topic with the reason, so one bad record never stops the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.errors import KafkaError as AIOKafkaError

from bridge.config import KafkaConfig
from bridge.errors import KafkaError
from bridge.metrics import BridgeMetrics
from bridge.serialize import DeadLetter, KafkaMessage, RecordSerializer

log = logging.getLogger(__name__)

_PERMANENT_FAILURES: dict[type[BaseException], str] = {
    MessageSizeTooLargeError: "record_too_large",
    RecordTooLargeError: "record_too_large",
    TopicAuthorizationFailedError: "topic_authorization_failed",
}


class KafkaSink:
    """Owns the producer, the bounded queue in front of it and the task that drains it.

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
        self._queue: asyncio.Queue[KafkaMessage] = asyncio.Queue(maxsize=config.queue_max_records)
        self._producer: AIOKafkaProducer | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Future[object]] = set()
        self.delivered = 0
        self.failed = 0

    def _new_producer(self) -> AIOKafkaProducer:
        config = self._config
        return AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if config.compression == "none" else config.compression,
            linger_ms=config.linger_ms,
            max_batch_size=config.max_batch_bytes,
            request_timeout_ms=int(config.request_timeout_seconds * 1000),
        )

    async def start(self) -> None:
        """Connect the producer (bounded by the request timeout) and start draining.

        Raises:
            KafkaError: the brokers did not answer in time; the message names them.
        """
        producer = self._new_producer()
        try:
            await asyncio.wait_for(producer.start(), self._config.request_timeout_seconds)
        except (TimeoutError, KafkaConnectionError, AIOKafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
            raise KafkaError(
                f"cannot reach Kafka at {self._config.bootstrap_servers} "
                f"within {self._config.request_timeout_seconds:g}s ({type(exc).__name__}): "
                "check kafka.bootstrap_servers or KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        self._producer = producer
        self._drain_task = asyncio.create_task(self._drain(), name="kafka-sink-drain")

    async def put(self, message: KafkaMessage) -> None:
        """Queue one message; waits only while the queue is full (backpressure)."""
        await self._queue.put(message)
        self._metrics.queue_depth.set(self._queue.qsize())

    @property
    def running(self) -> bool:
        """Whether the producer is started and its drain task alive."""
        return self._drain_task is not None and not self._drain_task.done()

    @property
    def pending(self) -> int:
        """Messages queued or sent but not yet acknowledged."""
        return self._queue.qsize() + len(self._in_flight)

    async def _drain(self) -> None:
        producer = self._producer
        assert producer is not None
        while True:
            message = await self._queue.get()
            self._metrics.queue_depth.set(self._queue.qsize())
            try:
                future = await producer.send(
                    message.topic, message.value, key=message.key, headers=list(message.headers)
                )
            except AIOKafkaError as exc:
                self._failed(message, exc)
                continue
            finally:
                self._queue.task_done()
            self._in_flight.add(future)
            future.add_done_callback(lambda done, sent=message: self._delivered(sent, done))

    def _delivered(self, message: KafkaMessage, future: asyncio.Future[object]) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            self._failed(message, asyncio.CancelledError())
            return
        error = future.exception()
        if error is not None:
            self._failed(message, error)
            return
        self.delivered += 1
        metrics = self._metrics
        metrics.records_produced.labels(message.topic).inc()
        if message.stream is None or message.event_time is None:
            return
        acked = self._wall_clock()
        business = message.business or ""
        metrics.event_lag.labels(business, message.stream.value).observe((acked - message.event_time).total_seconds())
        metrics.pipeline_latency.labels(message.stream.value).observe((acked - message.received_time).total_seconds())
        metrics.last_event_timestamp.labels(business, message.stream.value).set(message.event_time.timestamp())

    def _failed(self, message: KafkaMessage, error: BaseException) -> None:
        self.failed += 1
        reason = _PERMANENT_FAILURES.get(type(error), type(error).__name__)
        self._metrics.produce_failures.labels(message.topic, reason).inc()
        log.error("Kafka did not take a record for topic %s (%s: %s)", message.topic, type(error).__name__, error)
        permanent = type(error) in _PERMANENT_FAILURES
        if permanent and message.stream is not None:
            letter = DeadLetter(
                reason=reason,
                stage="produce",
                detail=str(error),
                raw=f"{len(message.value)} bytes of Avro for key {message.key!r}",
                received_time=message.received_time,
                business=message.business,
                target_topic=message.topic,
            )
            self._metrics.dead_letters.labels(reason).inc()
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(self._serializer.serialize_dead_letter(letter))

    async def close(self, timeout: float | None = None) -> int:
        """Deliver what is queued, then stop the producer; never waits past ``timeout``.

        Returns:
            How many messages were still undelivered when the deadline passed (0 on a clean close).
        """
        deadline = time.monotonic() + (self._config.flush_timeout_seconds if timeout is None else timeout)
        producer = self._producer
        if producer is not None and self._drain_task is not None and not self._drain_task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), max(deadline - time.monotonic(), 0.01))
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
        if producer is not None:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                await asyncio.wait_for(producer.flush(), remaining)
            except TimeoutError:
                log.error("Kafka flush did not finish within the shutdown deadline")
            try:
                await asyncio.wait_for(producer.stop(), max(deadline - time.monotonic(), 1.0))
            except TimeoutError:
                log.error("Kafka producer did not stop within the shutdown deadline; abandoning it")
        undelivered = self.pending
        if undelivered:
            log.error("%d record(s) were not acknowledged by Kafka before shutdown", undelivered)
        return undelivered
