"""Wiring and lifecycle: build everything from the config, run it, stop it within a deadline.

Start order: metrics endpoint, Kafka producer (fail fast with a clear message when the broker
is unreachable), then one feed task per planned vendor connection. Stop order is the reverse,
driven by one ``stop`` event that SIGINT/SIGTERM sets: feeds close their sockets (no new data),
the sink flushes what it holds against ``kafka.flush_timeout_seconds``, the endpoint closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from bridge.config import BridgeConfig
from bridge.errors import KafkaError
from bridge.feed import Clock, FeedConnection, RetryPolicy, vendor_url
from bridge.http import HealthServer
from bridge.logs import guard_library_loggers
from bridge.metrics import BridgeMetrics, bucket_quantile, counter_totals, histogram_buckets
from bridge.protocol import ConnectionSession, FrameBudget, plan_connections
from bridge.records import Stream
from bridge.registry import SchemaRegistryClient
from bridge.serialize import RecordSerializer, schema_json
from bridge.sink import KafkaSink
from bridge.topics import ensure_topics

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ALL_CONNECTIONS_FAILED = 4


def build_feeds(
    config: BridgeConfig,
    serializer: RecordSerializer,
    sink: KafkaSink,
    metrics: BridgeMetrics,
    *,
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
        stale_after = entry.stale_after_seconds or source.stale_after_seconds
        for plan in plans:
            session = ConnectionSession(
                plan,
                budget=FrameBudget(source.frame_limit, source.frame_window_seconds),
                heartbeat_interval=source.heartbeat_interval_seconds,
                ack_timeout=source.ack_timeout_seconds,
                max_frame_bytes=source.max_frame_bytes,
                stale_after=stale_after,
            )
            feeds.append(
                FeedConnection(
                    session,
                    vendor_url(source.url, entry.business, api_key),
                    serializer,
                    sink.put,
                    metrics,
                    retry=retry
                    or RetryPolicy(
                        reconnect.initial_delay_seconds, reconnect.max_delay_seconds, reconnect.reset_after_seconds
                    ),
                    clock=clock,
                    open_timeout=source.open_timeout_seconds,
                    secrets=config.secrets(),
                    on_stale=entry.on_stale or source.on_stale,
                    gap_topic=config.kafka.topics.gap,
                )
            )
    return feeds


class Bridge:
    """The running bridge: owns the sink, the feeds, the endpoint and their tasks."""

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
        topics = config.kafka.topics
        self.serializer = RecordSerializer(
            {stream: topics.for_stream(stream) for stream in Stream},
            topics.dead_letter,
            wire_format=config.serialization.format,
            secrets=config.secrets(),
            dead_letter_max_raw_chars=config.kafka.dead_letter_max_raw_chars,
        )
        self.sink = KafkaSink(config.kafka, self.serializer, self.metrics)
        self.feeds = build_feeds(config, self.serializer, self.sink, self.metrics, retry=retry, clock=clock)
        self.health = HealthServer(self.metrics.registry, self.readiness)
        self.metrics_port: int | None = None
        self._lag_snapshot: dict[Stream, dict[float, float]] = {}

    def schema_topics(self) -> dict[str, str]:
        """Every topic this configuration writes to, by the name of its schema."""
        topics = self.config.kafka.topics
        streams = dict.fromkeys(stream for entry in self.config.source.subscriptions for stream in entry.streams)
        named = {stream.value: topics.for_stream(stream) for stream in streams}
        named["dead_letter"] = topics.dead_letter
        if topics.gap:
            named["gap"] = topics.gap
        return named

    def topic_names(self) -> list[str]:
        """Every topic this configuration writes to: its streams', the dead letters' and the gaps'."""
        return list(self.schema_topics().values())

    async def _register_schemas(self) -> None:
        """In ``confluent`` format, register each schema under ``<topic>-value`` and frame with its id."""
        registry = self.config.serialization.registry
        if self.config.serialization.format != "confluent" or registry is None:
            return
        client = SchemaRegistryClient(registry)
        ids = {}
        for name, topic in self.schema_topics().items():
            ids[name] = await client.register(f"{topic}-value", schema_json(name))
        self.serializer.use_schema_ids(ids)
        log.info("schemas registered at %s: %s", registry.url, ", ".join(f"{n}={i}" for n, i in ids.items()))

    def readiness(self) -> tuple[bool, str]:
        """Ready when at least one connection is subscribed and the producer is running."""
        subscribed = sum(feed.session.subscribed for feed in self.feeds)
        if not self.sink.running:
            return False, "kafka producer not running"
        if not subscribed:
            return False, f"no vendor connection subscribed (0 of {len(self.feeds)})"
        return True, f"{subscribed} of {len(self.feeds)} connections subscribed"

    async def run(
        self, stop: asyncio.Event, *, summary_interval: float | None = None, run_for: float | None = None
    ) -> int:
        """Run until ``stop`` is set, ``run_for`` seconds pass, or every connection failed for good.

        Returns:
            The process exit code: 0 after a requested stop, 4 when no connection is left.

        Raises:
            KafkaError: Kafka was unreachable at start.
        """
        self.metrics_port = await self.health.start(self.config.metrics.host, self.config.metrics.port)
        log.info("metrics on http://%s:%d/metrics", self.config.metrics.host, self.metrics_port)
        try:
            await ensure_topics(self.config.kafka, self.topic_names())
            await self._register_schemas()
            await self.sink.start()
            log.info(
                "producing to Kafka at %s (topics: %s)",
                self.config.kafka.bootstrap_servers,
                ", ".join(topic for topic in self.config.kafka.topics.model_dump().values() if topic),
            )
            return await self._supervise(stop, summary_interval, run_for)
        finally:
            for feed in self.feeds:
                await feed.finish()
            undelivered = await self.sink.close()
            await self.health.close()
            self._log_summary(final=True)
            if undelivered:
                log.error("%d record(s) were lost at shutdown; see the errors above", undelivered)

    async def _supervise(self, stop: asyncio.Event, summary_interval: float | None, run_for: float | None) -> int:
        feed_tasks = [asyncio.create_task(feed.run(stop), name=f"feed-{feed.session.plan.name}") for feed in self.feeds]
        helpers: list[asyncio.Task[Any]] = []
        if summary_interval:
            helpers.append(asyncio.create_task(self._summaries(summary_interval), name="summary"))
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

    async def _summaries(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._log_summary(final=False)

    def _log_summary(self, *, final: bool) -> None:
        """One line: records per topic, lag quantiles, dead letters, connections.

        Periodic lines give the lag over the interval since the previous line (what an operator
        watching the feed wants to know now); the final line gives it over the whole run.
        """
        registry = self.metrics.registry
        produced = counter_totals(registry, "infoway_bridge_records_produced", "topic")
        dead = sum(counter_totals(registry, "infoway_bridge_dead_letters", "reason").values())
        parts = [f"{topic}={int(count)}" for topic, count in sorted(produced.items())] or ["no records yet"]
        lag = []
        for stream in Stream:
            current = histogram_buckets(registry, "infoway_bridge_event_lag_seconds", stream=stream.value)
            previous = {} if final else self._lag_snapshot.get(stream, {})
            window = {bound: count - previous.get(bound, 0.0) for bound, count in current.items()}
            self._lag_snapshot[stream] = current
            p50, count = bucket_quantile(window, 0.5)
            p99, _ = bucket_quantile(window, 0.99)
            if count and p50 is not None and p99 is not None:
                # A kline's only vendor time is its bar's start, so its "lag" is the bar's age.
                name = "kline bar age" if stream is Stream.KLINE else stream.value
                lag.append(f"{name} p50={_ms(p50)} p99={_ms(p99)}")
        up = sum(feed.session.subscribed for feed in self.feeds)
        log.info(
            "%s: records %s; event lag %s %s; dead letters %d; connections subscribed %d/%d",
            "final summary" if final else "summary",
            " ".join(parts),
            "over the run" if final else "since the last summary",
            ", ".join(lag) or "n/a",
            int(dead),
            up,
            len(self.feeds),
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.0f}s"


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
