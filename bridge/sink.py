"""The Kafka side: delivery rounds from the spool to the producer, exactly once or at least once.

Theory of operation
-------------------
One task reads the spool in offset order (:meth:`bridge.spool.Spool.read`: up to
``delivery.transaction_max_records`` records, waiting for more until the oldest is
``delivery.max_wait_ms`` old) and delivers them as one *round*: the records grouped by partition
(murmur2 of the key, as Kafka's Java client does), each partition's records in order in as few
batches as fit. Only when Kafka has acknowledged the whole round does the spool's acknowledged position
advance, so the spool never forgets a record Kafka does not hold, and per-symbol order holds: one
partition per symbol, its batches in order, a failed round retried before the next begins.

``delivery.mode: exactly-once``: the producer is transactional. A round is one transaction that
also commits the round's last spool offset as a consumer-group offset
(:mod:`bridge.positions`); both commit or neither. After a failed round (the broker gone, a
commit whose answer was lost) the sink asks Kafka which position is committed and resumes after
it, so a round is never written twice; consumers with ``isolation.level=read_committed`` see
every record once. When that position is behind what Kafka had acknowledged (a broker that lost
its last transactions as it stopped), the records kept by :class:`bridge.settling.Settler`
are looked for in the topics and those missing are sent again. ``ProducerFenced`` means
another instance took over the transactional id: this one is the zombie and stops.

``delivery.mode: at-least-once``: the producer is idempotent. A round's partitions are retried
in place until acknowledged; a partition whose batch was written but whose answer was lost is
written again: a possible duplicate, bounded by one round.

A record Kafka refuses for good (too large, not authorised) goes to the dead-letter topic with
the reason; the records around it are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import ProducerFenced
from aiokafka.structs import TopicPartition

from bridge.config_kafka import KafkaConfig
from bridge.config_spool import DeliveryConfig, DeliveryMode
from bridge.errors import KafkaError
from bridge.kafka_connection import describe_error
from bridge.metrics import BridgeMetrics
from bridge.positions import committed_position, position_group, position_partition
from bridge.producer import FATAL_TO_PRODUCER, MAX_RETRY_DELAY, PERMANENT_FAILURES, Producer, is_permanent
from bridge.records import DeadLetter, DeadLetterStage
from bridge.serialize import KafkaMessage, RecordSerializer
from bridge.settling import Settler
from bridge.spool import Entry, Spool
from bridge.timing import remaining_linger

log = logging.getLogger(__name__)

Refusal = tuple[BaseException, list[Entry]]
"""What Kafka refused for good, and the records of the round that are not delivered because of it."""


class KafkaSink:
    """Owns the producer and the delivery task (see the module docstring).

    Args:
        config: the ``kafka`` section.
        delivery: the ``delivery`` section.
        spool: where records wait; the sink reads and acknowledges it.
        serializer: builds dead letters for records Kafka refuses for good.
        metrics: where deliveries, failures and lag are counted.
        transactional_id: the producer's id in exactly-once delivery.
        spool_identity: the spool's id, written with every committed position.
        run_id: written in position records, to tell runs apart.
        position_keys: more keys whose committed positions count for this spool (a shard's drain id).
        wall_clock: the time used to measure lag at acknowledgement (injected for tests).
    """

    def __init__(
        self,
        config: KafkaConfig,
        delivery: DeliveryConfig,
        spool: Spool,
        serializer: RecordSerializer,
        metrics: BridgeMetrics,
        *,
        transactional_id: str,
        spool_identity: str,
        run_id: str = "",
        position_keys: tuple[str, ...] = (),
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._delivery = delivery
        self._spool = spool
        self._serializer = serializer
        self._metrics = metrics
        self._run_id = run_id
        self._wall_clock = wall_clock
        self.exactly_once = delivery.mode is DeliveryMode.EXACTLY_ONCE
        self.transactional_id = transactional_id
        self._position_keys = (transactional_id, *position_keys)
        self.spool_identity = spool_identity
        self.producer = Producer(
            config, transactional_id if self.exactly_once else None, delivery.transaction_timeout_seconds
        )
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failure: BaseException | None = None
        self.broken = asyncio.Event()
        """Set when the sink can no longer deliver (fenced, or a bug); the application stops on it."""
        self.delivered = 0
        self.failed = 0
        self.settler = Settler(config, delivery, self.producer.by_partition, metrics, transactional_id)
        self._settled_through = 0
        """The position the spool resumed from: what is behind it was settled at start."""

    @property
    def running(self) -> bool:
        """Whether a producer is started and the delivery task runs."""
        return self.producer.current is not None and self._task is not None and not self._task.done()

    @property
    def pending(self) -> int:
        """Records in the spool not yet acknowledged by Kafka."""
        return self._spool.pending

    async def start(self) -> int | None:
        """Connect the producer; in exactly-once delivery, returns the spool position Kafka has committed.

        Raises:
            KafkaError: the brokers did not answer in time, or the position could not be read.
        """
        await self.producer.start()
        if not self.exactly_once:
            return None
        for attempt in range(1, 4):
            try:
                return await self._committed()
            except (TimeoutError, AIOKafkaError, OSError) as exc:
                # A broker that has just started answers with "not the leader yet" for a moment.
                log.info("the committed spool position is not readable yet (%s); retrying", describe_error(exc))
                await asyncio.sleep(attempt)
        try:
            return await self._committed()
        except (TimeoutError, AIOKafkaError, OSError) as exc:
            raise KafkaError(
                f"cannot read the committed spool position from {self._config.topics.offsets} "
                f"({describe_error(exc)}); check the brokers"
            ) from exc

    async def _committed(self) -> int:
        """The spool position Kafka has committed for this transactional id and spool."""
        return await committed_position(self._config, self._position_keys, self.spool_identity)

    @property
    def fenced(self) -> bool:
        """Whether delivery stopped because another producer took over the transactional id."""
        return isinstance(self.failure, ProducerFenced)

    def begin(self) -> None:
        """Start delivering from the spool (after the spool has resumed)."""
        self._settled_through = self._spool.acknowledged
        self._task = asyncio.create_task(self._deliver_loop(), name="kafka-delivery")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closing:
            return
        error = task.exception()
        self.failure = error if error is not None else RuntimeError("the delivery task ended")
        if not isinstance(error, ProducerFenced):
            log.critical("the Kafka sink failed (%s); stopping the bridge", describe_error(self.failure))
        self.broken.set()

    async def _deliver_loop(self) -> None:
        delivery = self._delivery
        while True:
            if self._closing and not self._spool.pending:
                return
            entries = await self._spool.read(delivery.transaction_max_records, 1.0)
            if entries and delivery.max_wait_ms and len(entries) < delivery.transaction_max_records:
                linger = remaining_linger(delivery.max_wait_ms, entries[0][1].received_time, self._wall_clock())
                if linger > 0:
                    await asyncio.sleep(linger)
                entries += await self._spool.read(delivery.transaction_max_records - len(entries), 0)
            if not entries:
                if self._closing:
                    return
                continue
            await self._round(entries)
            self._acknowledged(entries)

    async def _round(self, entries: list[Entry]) -> None:
        """Deliver ``entries`` (in offset order) until Kafka holds them; a record refused for good is dead-lettered.

        A record Kafka refuses for good leaves the producer's sequence numbers behind for its
        partition, so the producer is replaced, and the round is split in halves, the first
        half first, until the refused record stands alone and its dead letter takes its place:
        the order of the rest, and the meaning of the committed position, are kept.
        """
        attempt = self._transaction if self.exactly_once else self._at_least_once
        outcome = await attempt(entries)
        if outcome is None:
            return
        refused, rest = outcome
        await self.producer.replace(self.producer.current, refused)
        if len(rest) == 1:
            letter = self._dead_letter(rest[0][1], refused)
            again = await attempt([(rest[0][0], letter)])
            if again is not None:
                raise again[0]  # the dead-letter topic refuses it too: nothing is left to try
            return
        middle = len(rest) // 2
        await self._round(rest[:middle])
        await self._round(rest[middle:])

    # -- exactly once --------------------------------------------------------------------------

    async def _transaction(self, entries: list[Entry]) -> Refusal | None:
        """Commit ``entries`` with their position in one transaction, retrying until done; or say what was refused."""
        retry_delay = 0.5
        while entries:
            producer = self.producer.current
            assert producer is not None
            try:
                refused = await self._commit(producer, entries)
            except ProducerFenced:
                log.critical(
                    "another bridge took over transactional id %r (Kafka fenced this producer): what it delivered "
                    "belongs to that instance now; no more is written here, and the spool stays on disk",
                    self.transactional_id,
                )
                raise
            except (TimeoutError, AIOKafkaError) as exc:
                reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                self._retried(entries, reason, retry_delay)
                if isinstance(exc, (*FATAL_TO_PRODUCER, _CommitUnanswered)) or self.producer.dead():
                    # A new epoch: sequences start afresh, and a commit left half-way is settled by the
                    # coordinator (a committing transaction cannot be aborted).
                    await self.producer.replace(producer, exc)
                else:
                    await self._abandon(producer, exc)
                entries = await self._after_committed(entries)
                await asyncio.sleep(retry_delay)
                retry_delay = min(retry_delay * 2, MAX_RETRY_DELAY)
                continue
            return None if refused is None else (refused, entries)  # aborted: all of it again
        return None

    async def _commit(self, producer: AIOKafkaProducer, entries: list[Entry]) -> BaseException | None:
        """One transaction: the records and the position. A refusal aborts it and is returned."""
        timeout = self._config.request_timeout_seconds
        await producer.begin_transaction()
        groups = await self.producer.by_partition(entries)
        results = await asyncio.gather(
            *(self.producer.send_partition(producer, tp, [m for _, m in group]) for tp, group in groups.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not is_permanent(result):
                raise result
        refused = next((result for result in results if is_permanent(result)), None)
        if refused is not None:
            await self._abandon(producer, refused)
            return refused
        position = {position_partition(self._config): entries[-1][0]}
        group = position_group(self.transactional_id, self.spool_identity)
        await asyncio.wait_for(producer.send_offsets_to_transaction(position, group), timeout)
        try:
            await asyncio.wait_for(producer.commit_transaction(), self._config.delivery_timeout_seconds)
        except TimeoutError as exc:
            raise _CommitUnanswered("the commit was not answered in time") from exc
        return None

    async def _abandon(self, producer: AIOKafkaProducer, cause: BaseException) -> None:
        """Abort the failed transaction, or replace the producer when even that fails (its epoch is fenced then)."""
        try:
            await asyncio.wait_for(producer.abort_transaction(), self._config.request_timeout_seconds)
        except (TimeoutError, AIOKafkaError, AssertionError) as exc:
            # AssertionError: aiokafka's transaction state machine refuses the abort (a commit is under way).
            log.debug("aborting the transaction failed (%r); replacing the producer", exc)
            await self.producer.replace(producer, cause)

    async def _after_committed(self, entries: list[Entry]) -> list[Entry]:
        """What is left of ``entries`` once the position Kafka committed is known (a lost answer may hide a commit).

        Nothing is sent again before the position is known: resending a round whose commit went
        through would write it twice. So this waits, with backoff, as long as Kafka cannot answer.
        """
        delay = 0.5
        while True:
            try:
                committed = await self._committed()
                break
            except (TimeoutError, AIOKafkaError, OSError) as exc:
                log.debug("cannot read the committed position yet (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
        done = [entry for entry in entries if entry[0] <= committed]
        if done:
            log.info("the unanswered commit had gone through: %d record(s) are in Kafka already", len(done))
        floor, acknowledged = max(committed, self._settled_through), self._spool.acknowledged
        lost = await self.settler.lost_since(floor, acknowledged) if floor < acknowledged else []
        return lost + [entry for entry in entries if entry[0] > committed]

    # -- at least once -------------------------------------------------------------------------

    async def _at_least_once(self, entries: list[Entry]) -> Refusal | None:
        """Send ``entries``, retrying partitions not yet acknowledged; or say what was refused (the rest is done)."""
        groups = await self.producer.by_partition(entries)
        retry_delay = 0.5
        refused: BaseException | None = None
        again: list[Entry] = []
        while groups:
            producer = self.producer.current
            assert producer is not None
            results = await asyncio.gather(
                *(self.producer.send_partition(producer, tp, [m for _, m in group]) for tp, group in groups.items()),
                return_exceptions=True,
            )
            failed: dict[TopicPartition, list[Entry]] = {}
            for (tp, group), result in zip(list(groups.items()), results, strict=True):
                if result is None:
                    continue
                if is_permanent(result):
                    refused = result
                    again.extend(group)  # only the refused partitions' records go again
                    continue
                if not isinstance(result, TimeoutError | AIOKafkaError):
                    raise result
                failed[tp] = group
            if failed:
                reason = next((type(r).__name__ for r in results if isinstance(r, BaseException)), "timeout")
                self._retried([e for group in failed.values() for e in group], reason, retry_delay)
                if self.producer.dead() or any(isinstance(r, FATAL_TO_PRODUCER) for r in results):
                    await self.producer.replace(producer, RuntimeError("the producer's sender ended"))
                else:
                    await asyncio.sleep(retry_delay)
                    retry_delay = min(retry_delay * 2, MAX_RETRY_DELAY)
            groups = failed
        return None if refused is None else (refused, sorted(again, key=lambda entry: entry[0]))

    def _dead_letter(self, message: KafkaMessage, error: BaseException) -> KafkaMessage:
        reason = PERMANENT_FAILURES.get(type(error), type(error).__name__)
        self.failed += 1
        self._metrics.produce_failures.labels(message.topic, reason).inc()
        self._metrics.dead_letters.labels(reason).inc()
        log.error("Kafka refused a record for topic %s for good (%s: %s)", message.topic, type(error).__name__, error)
        letter = DeadLetter(
            reason=reason,
            stage=DeadLetterStage.PRODUCE,
            detail=str(error),
            raw=f"{len(message.value)} bytes of Avro for key {message.key!r}",
            received_time=message.received_time,
            business=message.business,
            target_topic=message.topic,
        )
        return self._serializer.serialize_dead_letter(letter)

    def _retried(self, entries: list[Entry], reason: str, delay: float) -> None:
        for _, message in entries[:1]:
            self._metrics.produce_failures.labels(message.topic, f"retried_{reason}").inc(len(entries))
        log.warning(
            "Kafka did not acknowledge %d record(s) (%s); retrying in %.1fs, in order, from the spool",
            len(entries), reason, delay,
        )  # fmt: skip

    def _acknowledged(self, entries: list[Entry]) -> None:
        self._metrics.observe_acknowledged([message for _, message in entries], self._wall_clock())
        self.delivered += len(entries)
        self._spool.acknowledge(entries[-1][0])
        if self.exactly_once:
            self.settler.recent.add(entries)

    async def close(self, timeout: float | None = None) -> int:
        """Deliver what the spool holds, within ``timeout``, then stop; returns how many records are left in it."""
        self._closing = True
        deadline = time.monotonic() + (self._config.flush_timeout_seconds if timeout is None else timeout)
        task = self._task
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), max(deadline - time.monotonic(), 0.01))
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.producer.stop(max(deadline - time.monotonic(), 1.0))
        return self._spool.pending


class _CommitUnanswered(TimeoutError):
    """The commit was sent and not answered: it may have gone through, and the transaction cannot be aborted."""
