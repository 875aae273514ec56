"""Wiring and lifecycle: build everything from the config, run it, stop it within a deadline.

Start order (:meth:`Bridge.run`): the metrics endpoint, the topics (created or checked), the
framing (schemas registered in confluent format), then the :class:`~bridge.replica.Replica`,
which starts a :class:`~bridge.shard_unit.ShardUnit` for every code (unsharded) or for each
shard this replica owns: its spool (locked and scanned), its Kafka producer (fail fast with a
clear message when the broker is unreachable; in exactly-once delivery it fences an earlier
instance and reads the committed spool position), the spool's replay and the delivery task,
then one feed task per planned vendor connection. The teardown is the reverse, written once as
an :class:`~contextlib.AsyncExitStack`: each unit's feeds close their sockets (no new data) and
publish any gap still open, its sink delivers what the spool holds against
``kafka.flush_timeout_seconds`` (the rest stays in the spool for the next start), the spool is
synced and released; then the endpoint closes and the final summary is logged.

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
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from bridge.backfill_wiring import build_rest
from bridge.config import BridgeConfig
from bridge.config_sharding import ShardingMode
from bridge.config_spool import DeliveryMode
from bridge.errors import ConfigError
from bridge.http import HealthServer
from bridge.logs import guard_library_loggers
from bridge.metrics import BridgeMetrics
from bridge.protocol.session import run_id
from bridge.registry import register_schemas
from bridge.replica import EXIT_ALL_CONNECTIONS_FAILED, EXIT_OK, Replica
from bridge.reporting import Summaries
from bridge.serialize import Framing, RecordSerializer, TopicMap, WireFormat
from bridge.shard_unit import await_all
from bridge.timing import Clock, RetryPolicy
from bridge.topics import ensure_topics

log = logging.getLogger(__name__)

__all__ = ["EXIT_ALL_CONNECTIONS_FAILED", "EXIT_OK", "Bridge", "topic_map", "transactional_stem"]


def topic_map(config: BridgeConfig) -> TopicMap:
    """The topics this configuration writes to: its streams', the dead letters' and the gaps'."""
    topics = config.kafka.topics
    streams = dict.fromkeys(stream for entry in config.source.subscriptions for stream in entry.streams)
    return TopicMap({stream: topics.for_stream(stream) for stream in streams}, topics.dead_letter, topics.gap)


def transactional_stem(config: BridgeConfig) -> str:
    """``delivery.transactional_id``, else ``<client_id>.<host>`` unsharded or ``<client_id>.<group>`` sharded.

    Sharded, every replica must derive the same id for a shard (``<stem>.shard-03``): that is
    what lets the shard's new owner fence the old one.
    """
    if config.delivery.transactional_id:
        return config.delivery.transactional_id
    if config.sharding.sharded:
        return f"{config.kafka.client_id}.{config.sharding.group}"
    return f"{config.kafka.client_id}.{socket.gethostname()}"


class Bridge:
    """The running bridge: owns the replica (its shard units), the endpoint and their tasks.

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
        self.replica: Replica | None = None
        self._retry, self._clock = retry, clock
        self.health = HealthServer(self.metrics.registry, self.readiness)
        self.metrics_port: int | None = None
        self._summaries = Summaries(self.metrics.registry)
        self._subscribed_at_stop: int | None = None
        """Set when the feeds stop; None while they never ran (then no final summary: the start failed)."""
        self._connections_at_stop = 0

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
        """Ready when at least one connection is subscribed and every producer runs (or, sharded, no shard is owned)."""
        replica = self.replica
        if replica is None:
            return False, "starting"
        sinks = [unit.sink for unit in replica.units.values()]
        if any(sink is None or not sink.running for sink in sinks):
            return False, "kafka producer not running"
        shards = ""
        if self.config.sharding.sharded:
            owned = replica.owned_shards()
            listed = ",".join(f"{shard:02d}" for shard in owned) or "none"
            shards = f"; shards {listed} ({len(owned)} of {self.config.sharding.shards}), {replica.codes} codes"
            if not owned:
                return True, f"owns no shard now (group {self.config.sharding.group}){shards}"
        subscribed = replica.subscribed
        if not subscribed:
            return False, f"no vendor connection subscribed (0 of {replica.feeds}){shards}"
        return True, f"{subscribed} of {replica.feeds} connections subscribed{shards}"

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
            exactly_once = config.delivery.mode is DeliveryMode.EXACTLY_ONCE
            compacted = {config.kafka.topics.offsets: 1} if exactly_once else {}
            if config.sharding.mode is ShardingMode.GROUP:
                compacted[config.sharding.control_topic] = config.sharding.shards
            await ensure_topics(config.kafka, [*self.topics.schema_topics().values(), *compacted], compacted=compacted)
            serializer = RecordSerializer(
                self.topics,
                await self._framing(),
                secrets=config.secrets(),
                dead_letter_max_raw_chars=config.kafka.dead_letter_max_raw_chars,
                headers=config.serialization.headers,
            )
            stem = transactional_stem(config)
            # In a thread: the HTTP client loads the CA bundle, 35-140 ms measured, which would stall the loop.
            rest = await asyncio.to_thread(build_rest, config, self.metrics, self._clock)
            if rest is not None:
                teardown.push_async_callback(rest.close)
            self.replica = Replica(
                config, serializer, self.metrics, run=self.run_id, transactional_stem=stem, retry=self._retry,
                clock=self._clock, rest=rest,
            )  # fmt: skip
            teardown.push_async_callback(self.replica.stop)
            await self.replica.start()
            log.info(
                "producing to Kafka at %s (topics: %s; delivery %s%s; %s; run id %s)",
                config.kafka.bootstrap_servers,
                ", ".join(self.topics.schema_topics().values()),
                config.delivery.mode.value,
                f" as transactional id {stem}{'.shard-NN' if config.sharding.sharded else ''}" if exactly_once else "",
                self._sharding_summary(),
                self.run_id,
            )
            return await self._supervise(self.replica, stop, summary_interval, run_for)

    def _sharding_summary(self) -> str:
        sharding = self.config.sharding
        if sharding.mode is ShardingMode.NONE:
            return "unsharded"
        if sharding.mode is ShardingMode.STATIC:
            return f"static shards: replica {sharding.static_index} of {sharding.count}, {sharding.shards} shards"
        return (
            f"group {sharding.group!r} as {sharding.instance!r} on {sharding.control_topic} "
            f"({sharding.shards} shards, session timeout {sharding.session_timeout_seconds:g}s)"
        )

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

    async def _supervise(
        self, replica: Replica, stop: asyncio.Event, summary_interval: float | None, run_for: float | None
    ) -> int:
        helpers: list[asyncio.Task[Any]] = []
        if summary_interval:
            helpers.append(asyncio.create_task(self._summary_loop(summary_interval), name="summary"))
        if run_for is not None:
            helpers.append(asyncio.create_task(_set_after(stop, run_for), name="run-for"))
        try:
            return await replica.run(stop)
        finally:
            self._subscribed_at_stop = replica.subscribed
            self._connections_at_stop = replica.feeds
            stop.set()
            for task in helpers:
                task.cancel()
            await await_all(helpers, timeout=10)

    async def _summary_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._log_summary(final=False)

    def _log_summary(self, *, final: bool) -> None:
        subscribed = self._subscribed_at_stop if final else (self.replica.subscribed if self.replica else None)
        if subscribed is None:
            return  # the start failed; its error is the whole story
        connections = self._connections_at_stop if final else (self.replica.feeds if self.replica else 0)
        log.info("%s", self._summaries.line(final=final, subscribed=subscribed, connections=connections))


async def _set_after(event: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    log.info("--run-for %gs elapsed; stopping", seconds)
    event.set()
