"""This replica's share of the work: the shard units it runs, changed as ownership changes.

Unsharded (``sharding.mode: none``) the replica runs one unit with every code. Static mode runs
the units of the shards ``index`` owns, for good. Group mode follows Kafka's assignment
(:mod:`bridge.ownership`): on each change it first stops the shards it lost (closing their
connections, flushing their spools, then writing ``released``) and then starts those it gained,
each once its previous owner released it, or at once when that owner is dead (its heartbeats
stopped), or after ``sharding.handoff_timeout_seconds`` at the latest; the new owner's producer
fences the old one's in any case. One log line per change says what moved.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from bridge.backfill_wiring import RestShared
from bridge.config import BridgeConfig
from bridge.config_sharding import ShardingMode
from bridge.errors import KafkaError
from bridge.metrics import BridgeMetrics
from bridge.ownership import ControlChannel, GroupMembership, now
from bridge.protocol.handoff import Inherited, ShardState, Verdict, decide
from bridge.protocol.shards import shard_name, static_shards
from bridge.serialize import RecordSerializer
from bridge.shard_unit import ShardUnit, await_all, drain_settings, unit_settings
from bridge.spool_lock import SpoolInUse, in_use
from bridge.timing import Clock, RetryPolicy

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ALL_CONNECTIONS_FAILED = 4
STALE_HEARTBEATS = 3
LOCK_RETRY_SECONDS = 0.25
"""The first wait for a shard's spool lock held by a sibling worker (doubling to 2 s)."""


class Replica:
    """Runs the units of the shards this replica owns (see the module docstring)."""

    def __init__(
        self,
        config: BridgeConfig,
        serializer: RecordSerializer,
        metrics: BridgeMetrics,
        *,
        run: str,
        transactional_stem: str,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rest: RestShared | None = None,
    ) -> None:
        self._config = config
        self._rest = rest
        self._serializer = serializer
        self._metrics = metrics
        self._run = run
        self._stem = transactional_stem
        self._retry, self._clock = retry, clock
        self.units: dict[int | None, ShardUnit] = {}
        sharding = config.sharding
        group = sharding.mode is ShardingMode.GROUP
        self.membership = GroupMembership(config.kafka, sharding) if group else None
        self.control = ControlChannel(config.kafka, sharding, run) if group else None
        self._heartbeats: asyncio.Task[None] | None = None
        self._drains: dict[int, asyncio.Task[None]] = {}
        """Shards whose records this replica's spool still holds though another replica owns them now."""
        self._releasing: dict[int, ShardUnit] = {}
        """Units being stopped: still heartbeated, so the next owner waits for their release."""
        metrics.shards_total.set(sharding.shards if sharding.sharded else 1)
        metrics.sharding_info.labels(sharding.mode.value, sharding.group if sharding.sharded else "").set(1)

    @property
    def feeds(self) -> int:
        """Connections planned across the units."""
        return sum(len(unit.feeds) for unit in self.units.values())

    @property
    def subscribed(self) -> int:
        """Connections subscribed now across the units."""
        return sum(unit.subscribed for unit in self.units.values())

    @property
    def codes(self) -> int:
        """Codes this replica owns now."""
        return sum(unit.settings.codes for unit in self.units.values())

    def owned_shards(self) -> list[int]:
        """The shards this replica runs, in order (empty unsharded)."""
        return sorted(shard for shard in self.units if shard is not None)

    async def start(self) -> None:
        """Start the units (none, static) or join the group (its first assignment starts them in :meth:`run`).

        Raises:
            KafkaError: a unit's producer could not start, or the group could not be joined.
        """
        sharding = self._config.sharding
        if sharding.mode is ShardingMode.NONE:
            await self._apply({None})
        elif sharding.mode is ShardingMode.STATIC:
            assert sharding.count is not None
            await self._apply(set(static_shards(sharding.static_index, sharding.count, sharding.shards)))
        else:
            assert self.membership is not None
            assert self.control is not None
            try:
                await self.control.start()
                await self.membership.start()
            except (TimeoutError, OSError) as exc:
                raise KafkaError(f"cannot join the sharding group {sharding.group!r}: {exc!r}") from exc
            self._heartbeats = asyncio.create_task(self._heartbeat_loop(), name="shard-heartbeats")

    async def run(self, stop: asyncio.Event) -> int:
        """Follow ownership and watch the units until ``stop``; returns the exit code.

        Raises:
            KafkaError: a unit's sink failed (other than being fenced by a new owner of its shard).
        """
        while not stop.is_set():
            waits = [asyncio.create_task(stop.wait())]
            if self.membership is not None:
                waits.append(asyncio.create_task(self.membership.changed.wait()))
            waits.extend(asyncio.create_task(unit.ended.wait()) for unit in self.units.values())
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            if stop.is_set():
                break
            if self.membership is not None and self.membership.changed.is_set():
                self.membership.changed.clear()
                await self._apply(set(self.membership.owned))
            if await self._check_units():
                return EXIT_ALL_CONNECTIONS_FAILED
        return EXIT_OK

    async def _check_units(self) -> bool:
        """Deal with ended units; True when no vendor connection is left at all."""
        for shard, unit in list(self.units.items()):
            if not unit.ended.is_set():
                continue
            if unit.fenced and shard is not None:
                log.warning(
                    "shard %02d was taken over by another replica (its producer was fenced); stopped it here",
                    shard,
                )
                self._metrics.shard_handoffs.labels("fenced").inc()
                await self._stop_unit(shard, announce=False)
                continue
            if unit.sink is not None and unit.sink.broken.is_set():
                raise KafkaError(f"the Kafka sink failed: {unit.sink.failure}")
            error = unit.feed_error()
            if error is not None:
                raise error
        units = list(self.units.values())
        if not units or not all(unit.feeds and len(unit.failures()) == len(unit.feeds) for unit in units):
            return False
        for unit in units:
            for feed in unit.failures():
                log.error("connection %s stopped for good: %s", feed.session.plan.name, feed.failure)
        log.error("no vendor connection is left; exiting with status %d", EXIT_ALL_CONNECTIONS_FAILED)
        return True

    async def _apply(self, owned: set[int | None]) -> None:
        """Stop the units of shards no longer owned, then start those newly owned."""
        current = set(self.units)
        lost, gained = current - owned, owned - current
        if lost:
            await asyncio.gather(*(self._stop_unit(shard, announce=True) for shard in lost))
        for shard in gained:
            drain = self._drains.pop(shard, None) if shard is not None else None
            if drain is not None:
                drain.cancel()  # the shard's unit delivers the rest from the same spool
                await await_all([drain], timeout=self._config.kafka.flush_timeout_seconds + 5)
        inherited = await self._handoffs({shard for shard in gained if shard is not None})
        results = await asyncio.gather(
            *(self._start_unit(shard, inherited.get(shard) if shard is not None else None) for shard in gained),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._report(sorted(s for s in gained if s is not None), sorted(s for s in lost if s is not None))
        for shard in self._orphans():
            self._drains[shard] = asyncio.create_task(self._drain(shard), name=f"drain-{shard_name(shard)}")

    def _orphans(self) -> list[int]:
        """Shards with a spool directory here that this replica neither owns nor drains."""
        directory, sharding = self._config.spool.dir, self._config.sharding
        if not sharding.sharded or directory is None or not Path(directory).is_dir():
            return []
        found = {path.name.removeprefix("shard-"): path for path in Path(directory).glob("shard-*")}
        shards = {
            int(number)
            for number, path in found.items()
            if number.isdigit() and int(number) < sharding.shards and not in_use(path)
        }
        return sorted(shards - set(self.units) - set(self._drains) - set(sharding.colocated))

    async def _drain(self, shard: int) -> None:
        """Deliver what this replica's spool holds of ``shard`` (owned elsewhere now), then let go of it."""
        unit = ShardUnit(
            drain_settings(self._config, shard, self._stem), self._config, self._serializer, self._metrics,
            run=self._run, retry=self._retry, clock=self._clock,
        )  # fmt: skip
        try:
            await unit.start()
            if unit.sink is None:
                return
            if not unit.spool.pending:
                # What the checkpoint counted as delivered, the topics hold (or nothing is left on disk).
                log.info("shard %02d: the records this replica's spool holds of it are all in Kafka", shard)
                return
            log.warning(
                "shard %02d: the spool here holds %d records of this shard, which another replica owns now; "
                "delivering them as %s (later than that replica's newer records of the same codes)",
                shard, unit.spool.pending, unit.settings.transactional_id,
            )  # fmt: skip
            await unit.spool.wait_until_empty()
            log.info("shard %02d: the records this replica's spool held are in Kafka", shard)
        except SpoolInUse as exc:
            # Another process (a sibling worker that owns the shard) took the directory first: it is theirs.
            log.debug("shard %02d: %s; leaving it to that process", shard, exc)
        except (KafkaError, OSError) as exc:
            log.error(
                "shard %02d: cannot deliver what the spool here holds (%s); retried at the next change", shard, exc
            )
        finally:
            await unit.stop()
            if self._drains.get(shard) is asyncio.current_task():
                del self._drains[shard]

    async def _handoffs(self, gained: set[int]) -> dict[int, Inherited]:
        """For each gained shard, what its previous owner left (waiting for live owners to release)."""
        if self.control is None or not gained:
            return {}
        sharding = self._config.sharding
        # An owner heartbeats until it has released (its flush included): three missed beats mean it is dead.
        stale_after = timedelta(seconds=STALE_HEARTBEATS * sharding.heartbeat_interval_seconds)
        lasts = await self.control.last(gained)
        inherited: dict[int, Inherited] = {}
        waiting: dict[int, int] = {}
        for shard, (record, end) in lasts.items():
            verdict, left = decide(record, now(), stale_after=stale_after)
            if left is not None:
                inherited[shard] = left
            if verdict is Verdict.WAIT:
                waiting[shard] = end
        if waiting:
            owners = sorted({inherited[shard].previous_owner for shard in waiting})
            log.info(
                "waiting up to %gs for %s to release shards %s",
                sharding.handoff_timeout_seconds, ", ".join(owners), _listed(waiting),
            )  # fmt: skip
            released = await self.control.released(waiting, sharding.handoff_timeout_seconds)
            for shard in waiting:
                record = released.get(shard)
                if record is None:
                    self._metrics.shard_handoffs.labels("taken_over").inc()
                    log.warning(
                        "shard %02d: %s did not release it within %gs; taking it over (its producer is fenced)",
                        shard, inherited[shard].previous_owner, sharding.handoff_timeout_seconds,
                    )  # fmt: skip
                else:
                    inherited[shard] = Inherited(record.at, record.owner, record.connections)
        return inherited

    async def _start_unit(self, shard: int | None, inherited: Inherited | None) -> None:
        unit = await self._started_unit(shard, inherited)
        self.units[shard] = unit
        if shard is not None:
            self._metrics.shard_owned.labels(f"{shard:02d}").set(1)
            self._metrics.shard_handoffs.labels("gained").inc()
            if self.control is not None:
                await self.control.announce(shard, ShardState.OWNED, unit.connection_ids(), now())
        self._count()

    async def _started_unit(self, shard: int | None, inherited: Inherited | None) -> ShardUnit:
        """A started unit of ``shard``, waiting up to ``sharding.handoff_timeout_seconds`` for its spool's lock.

        A shard's spool directory can still be locked by a sibling worker (``run --workers``) that
        is delivering what it held of the shard from an earlier assignment: that ends once Kafka has
        those records, so the new owner waits for it rather than failing.

        Raises:
            SpoolInUse: the directory stayed locked for the whole wait.
        """
        settings = unit_settings(self._config, shard, self._stem)
        clock = self._clock or Clock()
        timeout = self._config.sharding.handoff_timeout_seconds
        deadline = clock.monotonic() + timeout
        delay = LOCK_RETRY_SECONDS
        while True:
            unit = ShardUnit(
                settings, self._config, self._serializer, self._metrics, run=self._run, retry=self._retry,
                clock=self._clock, rest=self._rest,
            )  # fmt: skip
            try:
                await unit.start(inherited)
            except SpoolInUse as exc:
                if clock.monotonic() + delay > deadline:
                    raise SpoolInUse(f"{exc}; waited {timeout:g}s (sharding.handoff_timeout_seconds)") from exc
                log.info("%s: %s; waiting for it to let go (retrying in %.2gs)", settings.label, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                return unit

    async def _stop_unit(self, shard: int | None, *, announce: bool) -> None:
        unit = self.units.pop(shard)
        stopped_at = now()
        connections = unit.connection_ids()
        if shard is not None:
            self._releasing[shard] = unit
        try:
            await unit.stop()
        finally:
            if shard is not None:
                self._releasing.pop(shard, None)
        if shard is not None:
            self._metrics.shard_owned.remove(f"{shard:02d}")
            self._metrics.shard_handoffs.labels("lost").inc()
            if announce and self.control is not None:
                await self.control.announce(shard, ShardState.RELEASED, connections, stopped_at)
        self._count()

    def _count(self) -> None:
        self._metrics.shards_owned.set(len(self.owned_shards()))
        self._metrics.codes_owned.set(self.codes)

    def _report(self, gained: list[int], lost: list[int]) -> None:
        if not self._config.sharding.sharded:
            return
        log.info(
            "shards: gained %s, lost %s; now owning %d of %d shards (%s), %d codes on %d connections",
            _listed(gained) or "none", _listed(lost) or "none", len(self.units), self._config.sharding.shards,
            _listed(self.owned_shards()) or "none", self.codes, self.feeds,
        )  # fmt: skip

    async def _heartbeat_loop(self) -> None:
        assert self.control is not None
        interval = self._config.sharding.heartbeat_interval_seconds
        while True:
            await asyncio.sleep(interval)
            at = now()
            held = [
                (shard, unit) for shard, unit in self.units.items() if shard is not None and not unit.ended.is_set()
            ]
            announcements = [
                self.control.announce(shard, ShardState.OWNED, unit.connection_ids(), at)
                for shard, unit in [*held, *self._releasing.items()]
            ]
            results = await asyncio.gather(*announcements, return_exceptions=True)
            failed = [result for result in results if isinstance(result, BaseException)]
            if failed:
                log.info("could not write %d shard heartbeat(s) (%r); retrying", len(failed), failed[0])

    async def stop(self) -> None:
        """Stop every unit (releasing its shard in group mode), the heartbeats, and leave the group."""
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            await await_all([self._heartbeats], timeout=1)
        for drain in self._drains.values():
            drain.cancel()
        await await_all(list(self._drains.values()), timeout=self._config.kafka.flush_timeout_seconds + 5)
        await asyncio.gather(*(self._stop_unit(shard, announce=True) for shard in list(self.units)))
        if self.membership is not None:
            await self.membership.stop()
        if self.control is not None:
            await self.control.stop()


def _listed(shards: list[int] | dict[int, int] | set[int]) -> str:
    return ",".join(f"{shard:02d}" for shard in sorted(shards))
