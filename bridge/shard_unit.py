"""One shard's path from the vendor to Kafka: its connections, its spool and its producer.

An unsharded replica runs one unit holding every code; a sharded replica runs one unit per
shard it owns. A unit has everything exactly-once delivery needs on its own: its spool
(``spool.dir/shard-NN``, a share of ``spool.max_bytes``) and its transactional id
(``<stem>.shard-NN``), so a shard's records and its committed spool position move together, and
the next owner's producer fences the previous owner's: a replica that lost a shard without
noticing (a long pause, a network split) can no longer write it.

Start: the spool is opened and scanned, the producer connects (fencing the shard's earlier
producer and reading its committed position), the spool replays what Kafka lacks, then the
feeds connect. Stop is the reverse and bounded: feeds close (publishing a gap still open), the
sink delivers what the spool holds within ``kafka.flush_timeout_seconds``, the spool is synced
and released; what Kafka did not take stays on disk for this shard's next start here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bridge.backfill_wiring import RestShared, RestSide
from bridge.config import BridgeConfig, SubscriptionConfig
from bridge.config_spool import SpoolConfig
from bridge.feed import FeedConnection, vendor_url
from bridge.metrics import BridgeMetrics
from bridge.outlet import Outlet
from bridge.pipeline import Publisher
from bridge.positions import SEARCH_WINDOW_RECORDS
from bridge.protocol import ConnectionSession, FrameBudget
from bridge.protocol.handoff import Inherited
from bridge.protocol.requests import ConnectionPlan
from bridge.protocol.shards import plan_all, plan_shard, shard_name
from bridge.serialize import RecordSerializer
from bridge.sink import KafkaSink
from bridge.spool import Spool
from bridge.spool_segments import Recovered
from bridge.timing import Clock, RetryPolicy

log = logging.getLogger(__name__)

Plans = Sequence[tuple[ConnectionPlan, SubscriptionConfig]]


def build_feeds(
    config: BridgeConfig,
    plans: Plans,
    outlet: Outlet,
    metrics: BridgeMetrics,
    *,
    run: str,
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
) -> list[FeedConnection]:
    """One :class:`FeedConnection` per planned connection, each with its entry's stale policy."""
    source = config.source
    reconnect = source.reconnect
    api_key = source.api_key.get_secret_value()
    feeds = []
    for plan, entry in plans:
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


def shard_spool(spool: SpoolConfig, shard: int | None, shards: int) -> SpoolConfig:
    """The spool settings of one shard: its own directory and a 1/``shards`` share of every limit."""
    if shard is None:
        return spool
    directory = None if spool.dir is None else Path(spool.dir) / shard_name(shard)
    max_bytes = max(spool.max_bytes // shards, 1 << 20)
    return spool.model_copy(
        update={
            "dir": directory,
            "max_bytes": max_bytes,
            "segment_bytes": min(spool.segment_bytes, max_bytes),
            "memory_bytes": max(spool.memory_bytes // shards, 1 << 20),
        }
    )


@dataclass(frozen=True, slots=True)
class UnitSettings:
    """What tells one unit from another: its shard (``None`` unsharded), plans, spool and transactional id."""

    shard: int | None
    plans: Plans
    spool: SpoolConfig
    transactional_id: str
    position_keys: tuple[str, ...] = ()
    """Other transactional ids whose committed positions count for this spool (see :func:`drain_settings`)."""
    drain: bool = False
    """No feeds: only deliver what the spool holds of a shard another replica owns now."""

    @property
    def label(self) -> str:
        """``shard 03``, or ``all codes`` unsharded, for log lines."""
        if self.shard is None:
            return "all codes"
        return f"shard {self.shard:02d}{' (draining)' if self.drain else ''}"

    @property
    def codes(self) -> int:
        """How many distinct codes the unit's connections carry."""
        return len({code for plan, _ in self.plans for code in plan.codes})


def unit_settings(config: BridgeConfig, shard: int | None, transactional_stem: str) -> UnitSettings:
    """The settings of the unit for ``shard`` (``None``: every code, unsharded)."""
    source, sharding = config.source, config.sharding
    cap = source.max_codes_per_connection
    if shard is None:
        return UnitSettings(None, plan_all(source.subscriptions, max_codes_per_connection=cap), config.spool,
                            transactional_stem)  # fmt: skip
    plans = plan_shard(shard, sharding.shards, source.subscriptions, max_codes_per_connection=cap)
    spool = shard_spool(config.spool, shard, sharding.shards)
    transactional_id = f"{transactional_stem}.{shard_name(shard)}"
    return UnitSettings(shard, plans, spool, transactional_id, (_drain_id(transactional_id, config),))


def drain_settings(config: BridgeConfig, shard: int, transactional_stem: str) -> UnitSettings:
    """The settings of a unit that only delivers what this replica's spool holds of a shard it does not own.

    It writes under a transactional id of its own (``<stem>.shard-03.drain.<instance>``): the
    shard's id belongs to its owner now, whose producer it must not fence. Positions committed
    under either id count for the spool, so nothing is delivered twice whoever sends it.
    """
    owned = unit_settings(config, shard, transactional_stem)
    own_id = owned.transactional_id
    return replace(owned, plans=(), transactional_id=_drain_id(own_id, config), position_keys=(own_id,), drain=True)


def _drain_id(transactional_id: str, config: BridgeConfig) -> str:
    return f"{transactional_id}.drain.{config.sharding.instance}"


class ShardUnit:
    """Owns one shard's spool, sink, feeds and their tasks (see the module docstring)."""

    def __init__(
        self,
        settings: UnitSettings,
        config: BridgeConfig,
        serializer: RecordSerializer,
        metrics: BridgeMetrics,
        *,
        run: str,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rest: RestShared | None = None,
    ) -> None:
        self.settings = settings
        self._rest = rest
        self._rest_side: RestSide | None = None
        self._config = config
        self._metrics = metrics
        self.spool = Spool(settings.spool, metrics)
        self.sink: KafkaSink | None = None
        self._serializer = serializer
        self._run = run
        self._retry, self._clock = retry, clock
        self.feeds: list[FeedConnection] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ended = asyncio.Event()
        """Set when the unit can no longer run: its sink failed, or every feed stopped for good."""
        self.recovered: Recovered | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._released = False

    @property
    def shard(self) -> int | None:
        """The shard this unit reads (``None``: every code)."""
        return self.settings.shard

    @property
    def subscribed(self) -> int:
        """Connections subscribed now."""
        return sum(feed.session.subscribed for feed in self.feeds)

    @property
    def fenced(self) -> bool:
        """Whether another replica's producer took this shard's transactional id over."""
        return self.sink is not None and self.sink.fenced

    def connection_ids(self) -> dict[str, str]:
        """The current connection id of each planned connection, by plan name (for the next owner's gap)."""
        return {feed.session.plan.name: feed.session.connection_id for feed in self.feeds}

    async def start(self, inherited: Inherited | None = None) -> None:
        """Open the spool, start the producer and replay, then connect the feeds.

        ``inherited`` (a shard handed over) opens a gap on each connection from when the previous
        owner's data stopped, closed by this connection's first data.

        Raises:
            KafkaError: the producer could not start or read the committed position.
            SpoolError: the spool directory is unusable.
        """
        recovered = await self._open_spool()
        self.recovered = recovered
        if self.settings.drain and not recovered.records:
            await self._release_spool()  # nothing of the shard left here
            return
        try:
            self.sink = KafkaSink(
                self._config.kafka,
                self._config.delivery,
                self.spool,
                self._serializer,
                self._metrics,
                transactional_id=self.settings.transactional_id,
                spool_identity=recovered.identity,
                run_id=self._run,
                position_keys=self.settings.position_keys,
            )
            committed = await self.sink.start()
        except BaseException:
            if self.sink is not None:
                await self.sink.producer.stop(1.0)
            await self._release_spool()
            raise
        await self._resume(self.sink, recovered, committed)
        self._log_recovery(recovered)
        self.sink.begin()
        self._watcher = asyncio.create_task(self._watch_sink(self.sink), name=f"{self.settings.label}-sink")
        outlet: Outlet = Publisher(self._serializer, self.spool, self._metrics)
        if self._rest is not None and self.settings.plans:
            self._rest_side = self._rest.side_for(outlet)
            outlet = self._rest_side.outlet
        self.feeds = build_feeds(
            self._config, self.settings.plans, outlet, self._metrics, run=self._run, retry=self._retry,
            clock=self._clock,
        )  # fmt: skip
        if self._rest_side is not None:
            self._rest_side.track(feed.session.plan for feed in self.feeds)
        for feed in self.feeds:
            if inherited is not None:
                previous = inherited.connections.get(feed.session.plan.name, f"{inherited.previous_owner}")
                feed.session.inherit_gap(inherited.since, previous)
            task = asyncio.create_task(feed.run(self._stop), name=f"feed-{feed.session.plan.name}")
            task.add_done_callback(self._feed_ended)
            self._tasks.append(task)

    async def _open_spool(self) -> Recovered:
        """Lock and scan the spool in a thread: checking every entry's CRC of a large spool takes seconds,
        and /healthz, /metrics and the other units' starts must not wait behind it.

        A cancellation waits for the scan to end, as it would have had the scan run in the loop, so
        the unit's stop finds the spool opened (and closes it) rather than locked behind its back.
        """
        opening = asyncio.ensure_future(asyncio.to_thread(self.spool.open))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            await asyncio.wait([opening])
            if not opening.cancelled():
                opening.exception()  # retrieved: the caller sees the cancellation
            raise

    def _log_recovery(self, recovered: Recovered) -> None:
        directory = self.settings.spool.dir
        if directory is None:
            log.warning("spool.dir is null: records wait in memory only, and are lost if the process dies")
            return
        log.info(
            "spool %s: found %d records in %d segments (%d bytes); Kafka has everything up to offset %d, "
            "%d records to deliver first; torn last write: %s; damaged entries skipped: %d",
            directory, recovered.records, recovered.segments, recovered.size_bytes, self.spool.acknowledged,
            self.spool.pending, recovered.torn or "none", recovered.damaged,
        )  # fmt: skip

    async def _resume(self, sink: KafkaSink, recovered: Recovered, committed: int | None) -> None:
        """Resume the spool after what Kafka holds; the topics decide when its position and the checkpoint differ."""
        checkpoint = recovered.acknowledged
        if committed is None or checkpoint <= committed:
            # At-least-once (Kafka keeps no position), or Kafka at or ahead of the checkpoint.
            self.spool.resume(checkpoint if committed is None else committed)
            return
        # Only the checkpoint's last records are looked for; what is older is taken as delivered.
        floor = max(committed, checkpoint - SEARCH_WINDOW_RECORDS)
        self.spool.resume(floor)
        uncertain = [entry for entry in await self.spool.read(checkpoint - floor, 0) if entry[0] <= checkpoint]
        where = f"spool {self.settings.spool.dir}"
        resumed = await sink.settler.settle(floor, checkpoint, uncertain, recovered.first_offset, where)
        self.spool.acknowledge(resumed.position)
        self.spool.rewind()

    async def _watch_sink(self, sink: KafkaSink) -> None:
        await sink.broken.wait()
        self.ended.set()

    def _feed_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None or all(t.done() for t in self._tasks):
            self.ended.set()

    def feed_error(self) -> BaseException | None:
        """The exception a feed task raised (a bug), if any."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def failures(self) -> list[FeedConnection]:
        """Feeds that stopped for good (a terminal vendor error)."""
        return [feed for feed in self.feeds if feed.failure is not None]

    async def stop(self, timeout: float = 10) -> int:
        """Close the feeds, deliver what the spool holds, release it; returns the records left in it."""
        self._stop.set()
        await await_all(self._tasks, timeout=timeout)
        if self._watcher is not None:
            self._watcher.cancel()
            await await_all([self._watcher], timeout=1)
        for feed in self.feeds:
            feed.finish()
            self._metrics.connection_up.remove(feed.session.plan.business, feed.session.plan.name)
        if self._rest_side is not None:
            await self._rest_side.close()  # gaps still being filled are reported as stopped
        left = 0
        if self.sink is not None:
            left = await self.sink.close()
        await self._release_spool()
        if left and self.settings.spool.dir is not None:
            log.warning(
                "%s: %d record(s) not yet in Kafka stay in the spool at %s; its next start here delivers them first",
                self.settings.label, left, self.settings.spool.dir,
            )  # fmt: skip
        elif left:
            log.error(
                "%s: %d record(s) were lost: Kafka did not take them in time and spool.dir is null",
                self.settings.label, left,
            )  # fmt: skip
        return left

    async def _release_spool(self) -> None:
        if self._released:
            return
        self._released = True
        await self.spool.close()
        self._metrics.forget_spool(self.spool)


async def await_all(tasks: Sequence[asyncio.Task[object]] | Sequence[asyncio.Task[None]], timeout: float) -> None:
    """Wait for ``tasks`` to end within ``timeout`` in all; cancel (and await) those that do not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for task in tasks:
        remaining = max(deadline - loop.time(), 0.01)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), remaining)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
