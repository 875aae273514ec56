"""The aiokafka producer the sink sends through: started, replaced when its sender died, partitions looked up.

aiokafka pitfalls designed around, each exercised by a test against a real broker:

* with idempotence on, waits can hang while the broker is down (#1101): every wait here is
  bounded (``request_timeout_seconds`` to submit, ``delivery_timeout_seconds`` per round);
* ``OutOfOrderSequenceNumber`` kills the producer's sender task for good (#1017): the sink sees
  the dead producer and :meth:`Producer.replace` builds a new one (with the same transactional
  id in exactly-once delivery, which fences the old one and aborts its open transaction);
* a transaction begun right after a commit is refused with ``CONCURRENT_TRANSACTIONS`` until the
  coordinator has written the commit markers (KAFKA-5477), and aiokafka retries it after a fixed
  20 ms (``BACKOFF_OVERRIDE``): measured against the local broker that wait was 20 of a round's
  27 ms (p50), so every exactly-once round paid it. :data:`TRANSACTION_RETRY_BACKOFF_SECONDS`
  replaces it; the markers take 1-3 ms there, and a round took 6 ms (p50) with 2 ms.

Records go in batches built with ``create_batch``/``send_batch``: one future per batch rather than
one per record (thousands of ``send()`` futures slow aiokafka badly, aio-libs/aiokafka #528).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.structs import TopicPartition

from bridge.config_kafka import KafkaConfig
from bridge.errors import KafkaError
from bridge.kafka_connection import connection_options, producer_is_dead, stop_quietly
from bridge.serialize import KafkaMessage
from bridge.spool import Entry

log = logging.getLogger(__name__)

PERMANENT_FAILURES: dict[type[BaseException], str] = {
    MessageSizeTooLargeError: "record_too_large",
    RecordTooLargeError: "record_too_large",
    RecordListTooLargeError: "record_too_large",
    TopicAuthorizationFailedError: "topic_authorization_failed",
}
"""Errors that retrying cannot fix, by dead-letter reason: the record goes to the dead-letter topic."""
FATAL_TO_PRODUCER: tuple[type[BaseException], ...] = (OutOfOrderSequenceNumber,)
"""Errors after which the producer's sender task is gone: only a new producer can send again."""
MAX_RETRY_DELAY = 5.0
TRANSACTION_RETRY_BACKOFF_SECONDS = 0.002
"""How soon a transaction's first AddPartitionsToTxn is retried when the last commit's markers are still
being written (aiokafka: 20 ms). Only that retry: every other one keeps the producer's backoff."""
PARTITION_CACHE_MAX = 100_000
"""Keys whose partition is remembered (about 20 MB at most); more distinct keys start the cache afresh."""


class Producer:
    """The current aiokafka producer, and how to send one partition's records through it.

    Args:
        config: the ``kafka`` section.
        transactional_id: set for exactly-once delivery; ``None`` for an idempotent producer.
        transaction_timeout_seconds: after this the broker aborts a transaction left open.
    """

    def __init__(
        self, config: KafkaConfig, transactional_id: str | None, transaction_timeout_seconds: int = 10
    ) -> None:
        self._config = config
        self.transactional_id = transactional_id
        self._transaction_timeout_ms = transaction_timeout_seconds * 1000
        self.current: AIOKafkaProducer | None = None
        self.generation = 0
        self.replaced = 0
        self._replace_lock = asyncio.Lock()
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        self._chosen: dict[tuple[str, bytes | None], TopicPartition] = {}

    def _options(self) -> dict[str, Any]:
        config = self._config
        options: dict[str, Any] = {
            **connection_options(config),
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": None if config.compression == "none" else config.compression,
            "linger_ms": config.linger_ms,
            "max_batch_size": config.max_batch_bytes,
            "max_request_size": max(config.max_batch_bytes, 1 << 20),
        }
        if self.transactional_id is not None:
            options["transactional_id"] = self.transactional_id
            options["transaction_timeout_ms"] = self._transaction_timeout_ms
        return options

    async def _new(self) -> AIOKafkaProducer:
        if self.transactional_id is not None:
            # A module global read at each retry (aiokafka 0.12-0.14): the one place to set it.
            aiokafka_sender.BACKOFF_OVERRIDE = TRANSACTION_RETRY_BACKOFF_SECONDS
        producer = AIOKafkaProducer(**self._options())
        try:
            await asyncio.wait_for(producer.start(), self._config.request_timeout_seconds)
        except BaseException:
            await stop_quietly(producer)
            raise
        self.generation += 1
        return producer

    async def start(self) -> None:
        """Connect, bounded by the request timeout (in exactly-once delivery this fences an earlier instance).

        Raises:
            KafkaError: the brokers did not answer in time; the message names them.
        """
        try:
            self.current = await self._new()
        except (TimeoutError, KafkaConnectionError, AIOKafkaError, OSError) as exc:
            raise KafkaError(
                f"cannot reach Kafka at {self._config.bootstrap_servers} "
                f"within {self._config.request_timeout_seconds:g}s ({type(exc).__name__}): "
                "check kafka.bootstrap_servers or KAFKA_BOOTSTRAP_SERVERS"
            ) from exc

    async def stop(self, timeout: float) -> None:
        """Stop the producer, bounded."""
        producer, self.current = self.current, None
        if producer is not None:
            await stop_quietly(producer, timeout)

    def dead(self) -> bool:
        """Whether the current producer's sender has died (#1017)."""
        return self.current is not None and producer_is_dead(self.current)

    async def replace(self, broken: AIOKafkaProducer | None, cause: BaseException) -> None:
        """Swap a producer that stopped working for a new one, retrying with backoff until one starts."""
        async with self._replace_lock:
            if broken is not self.current:
                return  # replaced already
            log.warning(
                "replacing the Kafka producer after %s (%s); what Kafka has not acknowledged is sent again, in order",
                type(cause).__name__, cause,
            )  # fmt: skip
            if broken is not None:
                await stop_quietly(broken)
            self.current = None
            delay = 0.5
            while True:
                try:
                    self.current = await self._new()
                    break
                except (TimeoutError, AIOKafkaError, OSError) as exc:
                    log.warning("cannot start a new Kafka producer (%s); retrying in %.1fs", type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
            self.replaced += 1
            log.info("Kafka producer replaced (generation %d)", self.generation)

    def known_partition(self, message: KafkaMessage) -> TopicPartition | None:
        """The cached partition of the message's key, or ``None`` (then ask :meth:`partition_of`)."""
        return self._chosen.get((message.topic, message.key))

    async def partition_of(self, message: KafkaMessage) -> TopicPartition:
        """The partition Kafka's Java client would pick for the message's key (murmur2), from cached metadata.

        The choice is cached per (topic, key) for messages with a key: a symbol's partition never changes while the
        topic's partition count does not (which the bridge never changes; metadata is read once).
        The cache holds at most ``PARTITION_CACHE_MAX`` keys and starts afresh when full.
        """
        cached = self._chosen.get((message.topic, message.key))
        if cached is not None:
            return cached
        partitions = self._partitions.get(message.topic)
        if partitions is None:
            partitions = self._partitions[message.topic] = await self._topic_partitions(message.topic)
        chosen = TopicPartition(message.topic, self._partitioner(message.key, partitions, partitions))
        if message.key is not None:  # no key: a random partition each time, as the Java client does
            if len(self._chosen) >= PARTITION_CACHE_MAX:
                self._chosen.clear()
            self._chosen[(message.topic, message.key)] = chosen
        return chosen

    async def by_partition(self, entries: list[Entry]) -> dict[TopicPartition, list[Entry]]:
        """``entries`` grouped by the partition each goes to, each group in the order given."""
        groups: dict[TopicPartition, list[Entry]] = {}
        for entry in entries:
            partition = self.known_partition(entry[1]) or await self.partition_of(entry[1])
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = []
            group.append(entry)
        return groups

    async def _topic_partitions(self, topic: str) -> list[int]:
        delay = 0.5
        while True:
            producer = self.current
            assert producer is not None, "start() the producer first"
            try:
                found = await asyncio.wait_for(producer.partitions_for(topic), self._config.request_timeout_seconds)
                return sorted(found)
            except (TimeoutError, AIOKafkaError) as exc:
                log.warning(
                    "no partition metadata for topic %s (%s); retrying in %.1fs", topic, type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def send_partition(
        self, producer: AIOKafkaProducer, partition: TopicPartition, messages: list[KafkaMessage]
    ) -> None:
        """Send ``messages`` to one partition in as few batches as fit, and wait until Kafka acknowledged all.

        Raises:
            TimeoutError: a batch was not submitted or acknowledged in time.
            MessageSizeTooLargeError: one message is larger than a batch.
            aiokafka.errors.KafkaError: the broker refused the batch.
        """
        config = self._config
        futures = []
        index = 0
        while index < len(messages):
            builder = producer.create_batch()
            count = 0
            for message in messages[index:]:
                timestamp = int(message.received_time.timestamp() * 1000)
                # aiokafka's C record builder accepts headers only as a list
                headers = list(message.headers)
                if builder.append(timestamp=timestamp, key=message.key, value=message.value, headers=headers) is None:
                    break
                count += 1
            if not count:
                raise MessageSizeTooLargeError(f"a record of {len(messages[index].value)} bytes exceeds a batch")
            builder.close()
            send = producer.send_batch(builder, partition.topic, partition=partition.partition)
            futures.append(await asyncio.wait_for(send, config.request_timeout_seconds))
            index += count
        await asyncio.wait_for(asyncio.gather(*futures), config.delivery_timeout_seconds)


def is_permanent(error: BaseException | None) -> bool:
    """Whether ``error`` is one retrying cannot fix (:data:`PERMANENT_FAILURES`)."""
    return error is not None and type(error) in PERMANENT_FAILURES
