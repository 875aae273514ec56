"""Wiring and lifecycle: build everything from the config, run it, stop it within a deadline.

Start order (:meth:`Bridge.run`): the metrics endpoint, the spool (locked and scanned), the
topics (created or checked), the framing (schemas registered in confluent format), the Kafka
producer (fail fast with a clear message when the broker is unreachable; in exactly-once
delivery it fences an earlier instance and reads the committed spool position), the spool's
replay and the delivery task, then one feed task per planned vendor connection. The teardown is
the reverse, written once as an :class:`~contextlib.AsyncExitStack`: feeds close their sockets
(no new data) and publish any gap still open, the sink delivers what the spool holds against
``kafka.flush_timeout_seconds`` (the rest stays in the spool for the next start), the spool is
synced and released, the endpoint closes, and the final summary is logged.

The path of one push: feed (socket) -> session (record) -> :class:`~bridge.pipeline.Publisher`
(serialize) -> :class:`~bridge.spool.Spool` (disk) -> :class:`~bridge.sink.KafkaSink` (Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from bridge.config import BridgeConfig
from bridge.config_spool import DeliveryMode
from bridge.errors import ConfigError, KafkaError
from bridge.feed import FeedConnection, Outlet, vendor_url
from bridge.http import HealthServer
from bridge.logs import guard_library_loggers
from bridge.metrics import BridgeMetrics
from bridge.pipeline import Publisher
from bridge.protocol import ConnectionSession, FrameBudget, plan_connections
from bridge.protocol.session import run_id
from bridge.registry import register_schemas
from bridge.reporting import Summaries
from bridge.serialize import Framing, RecordSerializer, TopicMap, WireFormat
from bridge.sink import KafkaSink
from bridge.spool import Spool
from bridge.spool_segments import Recovered
from bridge.timing import Clock, RetryPolicy
from bridge.topics import ensure_topics

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ALL_CONNECTIONS_FAILED = 4


def topic_map(config: BridgeConfig) -> TopicMap:
    """The topics this configuration writes to: its streams', the dead letters' and the gaps'."""
    topics = config.kafka.topics
    streams = dict.fromkeys(stream for entry in config.source.subscriptions for stream in entry.streams)
    return TopicMap({stream: topics.for_stream(stream) for stream in streams}, topics.dead_letter, topics.gap)


def build_feeds(
    config: BridgeConfig,
    outlet: Outlet,
    metrics: BridgeMetrics,
    *,
    run: str,
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
) -> list[FeedConnection]:
    """One :class:`FeedConnection` per planned connection, over every configured subscription."""
    source = config.source
    reconnect = source.reconnect
    api_key = source.api_key.get_secret_value()
    feeds = []
    planned: dict[str, int] = {}
    for entry in source.subscriptions:
        plans = plan_connections(
            entry.business,
            entry.codes,
            entry.streams,
            entry.kline_types,
            max_codes_per_connection=source.max_codes_per_connection,
            first_index=planned.get(entry.business, 0),
        )
        planned[entry.business] = planned.get(entry.business, 0) + len(plans)
        for plan in plans:
            session = ConnectionSession(
                plan,
                run_id=run,
                budget=FrameBudget(source.frame_limit, source.frame_window_seconds),
                heartbeat_interval=source.heartbeat_interval_seconds,
                ack_timeout=source.ack_timeout_seconds,
                max_frame_bytes=source.max_frame_bytes,
                stale_after=entry.stale_after_seconds or source.stale_after_seconds,
                on_stale=entry.on_stale or source.on_stale,
            )
            policy = retry or RetryPolicy(
                reconnect.initial_delay_seconds, reconnect.max_delay_seconds, reconnect.reset_after_seconds
            )
            url = vendor_url(source.url, entry.business, api_key)
            feeds.append(
                FeedConnection(
                    session,
                    url,
                    outlet,
                    metrics,
                    retry=policy,
                    clock=clock,
                    open_timeout=source.open_timeout_seconds,
                    secrets=config.secrets(),
                )
            )
    return feeds


class Bridge:
    """The running bridge: owns the sink, the feeds, the endpoint and their tasks.

    ``run_id`` (the UTC start and 24 random bits) is part of every connection id, so records of
    two runs never share a ``(connection_id, sequence)``.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        registry: CollectorRegistry | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        guard_library_loggers(config.secrets())
        self.metrics = BridgeMetrics(registry or CollectorRegistry())
        self.topics = topic_map(config)
        self.run_id = run_id(datetime.now(UTC), secrets.randbits(24))
        self.spool = Spool(config.spool, self.metrics)
        self.sink: KafkaSink | None = None
        self.feeds: list[FeedConnection] = []
        self._retry, self._clock = retry, clock
        self.health = HealthServer(self.metrics.registry, self.readiness)
        self.metrics_port: int | None = None
        self._summaries = Summaries(self.metrics.registry)
        self._subscribed_at_stop: int | None = None
        """Set when the feeds stop; None while they never ran (then no final summary: the start failed)."""

    async def _framing(self) -> Framing:
        """The wire format, with the registry's schema ids in confluent format (registered here, before any record)."""
        serialization = self.config.serialization
        if serialization.format is WireFormat.SINGLE_OBJECT:
            return Framing.single_object()
        if serialization.format is WireFormat.CONFLUENT and serialization.registry is not None:
            framing = await register_schemas(serialization.registry, self.topics.schema_topics())
            ids = ", ".join(f"{name}={schema_id}" for name, schema_id in framing.schema_ids.items())
            log.info("schemas registered at %s: %s", serialization.registry.url, ids)
            return framing
        return Framing.raw()

    def readiness(self) -> tuple[bool, str]:
        """Ready when at least one connection is subscribed and the producer is running."""
        subscribed = self._subscribed()
        if self.sink is None or not self.sink.running:
            return False, "kafka producer not running"
        if not subscribed:
            return False, f"no vendor connection subscribed (0 of {len(self.feeds)})"
        return True, f"{subscribed} of {len(self.feeds)} connections subscribed"

    def _subscribed(self) -> int:
        return sum(feed.session.subscribed for feed in self.feeds)

    async def run(
        self, stop: asyncio.Event, *, summary_interval: float | None = None, run_for: float | None = None
    ) -> int:
        """Run until ``stop`` is set, ``run_for`` seconds pass, or every connection failed for good.

        Returns:
            The process exit code: 0 after a requested stop, 4 when no connection is left.

        Raises:
            ConfigError: the metrics address cannot be listened on.
            KafkaError: Kafka was unreachable at start.
            RegistryError: the schema registry was unreachable at start (confluent format).
        """
        config = self.config
        async with contextlib.AsyncExitStack() as teardown:
            teardown.callback(self._log_summary, final=True)
            self.metrics_port = await self._start_health(config.metrics.host, config.metrics.port)
            teardown.push_async_callback(self.health.close)
            log.info("metrics on http://%s:%d/metrics", config.metrics.host, self.metrics_port)
            recovered = self.spool.open()
            teardown.push_async_callback(self.spool.close)
            exactly_once = config.delivery.mode is DeliveryMode.EXACTLY_ONCE
            offsets = (config.kafka.topics.offsets,) if exactly_once else ()
            await ensure_topics(config.kafka, [*self.topics.schema_topics().values(), *offsets], compacted=offsets)
            serializer = RecordSerializer(
                self.topics,
                await self._framing(),
                secrets=config.secrets(),
                dead_letter_max_raw_chars=config.kafka.dead_letter_max_raw_chars,
                headers=config.serialization.headers,
            )
            transactional_id = config.delivery.transactional_id or f"{config.kafka.client_id}.{socket.gethostname()}"
            self.sink = KafkaSink(
                config.kafka,
                config.delivery,
                self.spool,
                serializer,
                self.metrics,
                transactional_id=transactional_id,
                spool_identity=recovered.identity,
                run_id=self.run_id,
            )
            committed = await self.sink.start()
            teardown.push_async_callback(self._close_sink, self.sink)
            self.spool.resume(recovered.acknowledged if committed is None else committed)
            self._log_recovery(recovered)
            self.sink.begin()
            publisher = Publisher(serializer, self.spool, self.metrics)
            self.feeds = build_feeds(
                config, publisher, self.metrics, run=self.run_id, retry=self._retry, clock=self._clock
            )
            teardown.callback(self._finish_feeds)
            log.info(
                "producing to Kafka at %s (topics: %s; delivery %s%s; run id %s)",
                config.kafka.bootstrap_servers,
                ", ".join(self.topics.schema_topics().values()),
                config.delivery.mode.value,
                f" as transactional id {transactional_id}" if exactly_once else "",
                self.run_id,
            )
            return await self._supervise(stop, summary_interval, run_for)

    def _log_recovery(self, recovered: Recovered) -> None:
        directory = self.config.spool.dir
        if directory is None:
            log.warning("spool.dir is null: records wait in memory only, and are lost if the process dies")
            return
        log.info(
            "spool %s: found %d records in %d segments (%d bytes); Kafka has everything up to offset %d, "
            "%d records to deliver first; torn last write: %s; damaged entries skipped: %d",
            directory, recovered.records, recovered.segments, recovered.size_bytes, self.spool.acknowledged,
            self.spool.pending, recovered.torn or "none", recovered.damaged,
        )  # fmt: skip

    async def _start_health(self, host: str, port: int) -> int:
        """Listen for scrapes; a port another process holds is the operator's to change, not a bug.

        Raises:
            ConfigError: the address cannot be listened on, naming ``metrics.port`` (or ``metrics.host``).
        """
        try:
            return await self.health.start(host, port)
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            if exc.errno == errno.EADDRINUSE:
                advice = "another process listens there: stop it, or set another metrics.port (0 picks a free one)"
                raise ConfigError(f"metrics.port: cannot listen on {host}:{port}: {reason}; {advice}") from exc
            raise ConfigError(f"metrics.host, metrics.port: cannot listen on {host}:{port}: {reason}") from exc

    def _finish_feeds(self) -> None:
        for feed in self.feeds:
            feed.finish()

    async def _close_sink(self, sink: KafkaSink) -> None:
        left = await sink.close()
        if not left:
            return
        if self.config.spool.dir is None:
            log.error("%d record(s) were lost at shutdown: Kafka did not take them in time and spool.dir is null", left)
        else:
            log.warning(
                "%d record(s) not yet in Kafka stay in the spool at %s; the next start delivers them first",
                left, self.config.spool.dir,
            )  # fmt: skip

    async def _supervise(self, stop: asyncio.Event, summary_interval: float | None, run_for: float | None) -> int:
        assert self.sink is not None
        feed_tasks = [asyncio.create_task(feed.run(stop), name=f"feed-{feed.session.plan.name}") for feed in self.feeds]
        helpers: list[asyncio.Task[Any]] = []
        if summary_interval:
            helpers.append(asyncio.create_task(self._summary_loop(summary_interval), name="summary"))
        if run_for is not None:
            helpers.append(asyncio.create_task(_set_after(stop, run_for), name="run-for"))
        stopper = asyncio.create_task(stop.wait(), name="stop")
        sink_failed = asyncio.create_task(self.sink.broken.wait(), name="sink-failed")
        helpers.append(sink_failed)
        watched: set[asyncio.Future[Any]] = {*feed_tasks, stopper, sink_failed}
        try:
            while not stop.is_set() and not all(task.done() for task in feed_tasks):
                done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = None if task is stopper else task.exception()
                    if error is not None:
                        raise error
                if sink_failed in done:
                    raise KafkaError(f"the Kafka sink failed: {self.sink.failure}")
        finally:
            self._subscribed_at_stop = self._subscribed()
            stop.set()
            for task in helpers:
                task.cancel()
            await _await_all([*feed_tasks, *helpers, stopper], timeout=10)
        failures = [feed for feed in self.feeds if feed.failure is not None]
        if failures and len(failures) == len(self.feeds):
            for feed in failures:
                log.error("connection %s stopped for good: %s", feed.session.plan.name, feed.failure)
            log.error("no vendor connection is left; exiting with status %d", EXIT_ALL_CONNECTIONS_FAILED)
            return EXIT_ALL_CONNECTIONS_FAILED
        return EXIT_OK

    async def _summary_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._log_summary(final=False)

    def _log_summary(self, *, final: bool) -> None:
        subscribed = self._subscribed_at_stop if final else self._subscribed()
        if subscribed is None:
            return  # the start failed; its error is the whole story
        log.info("%s", self._summaries.line(final=final, subscribed=subscribed, connections=len(self.feeds)))


async def _set_after(event: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    log.info("--run-for %gs elapsed; stopping", seconds)
    event.set()


async def _await_all(tasks: Sequence[asyncio.Task[object]] | Sequence[asyncio.Task[None]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for task in tasks:
        remaining = max(deadline - time.monotonic(), 0.01)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), remaining)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
