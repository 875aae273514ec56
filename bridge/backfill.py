"""Kline backfill over REST after every gap: an outlet in front of the publisher, and the tasks that fill.

Theory of operation
-------------------
:class:`Backfiller` is the feed's outlet (it wraps :class:`~bridge.pipeline.Publisher`) and sees every
outcome on its way: it remembers, per connection, code and interval, the newest bar start the
WebSocket delivered. When a resolved gap of a connection with kline subscriptions passes, it
forwards the gap record and queues a *job* for that connection, with each pair's lower bound: the
last WebSocket bar before the gap (it was open when data stopped, so its pushes were incomplete),
or the bar containing the gap's start when none was seen, never older than ``backfill.max_age``.
The job's upper bound is the first bar the WebSocket delivers after the gap (it is live, the
WebSocket has it), else the newest REST bar (it may still be open: a bar is final only once a later
bar exists). So each bar inside the gap is published once, by REST; the bar open when the gap
began is published again by REST, final, after its incomplete WebSocket versions (the kline topic's
contract: the latest record of a bar wins).

While a connection's jobs run, its live kline records wait in a bounded hold (``hold_live_seconds``,
``hold_max_records``) and follow the REST bars, so the topic stays in bar order per symbol and
interval; past either bound they flow again and later REST bars arrive out of order (logged). One
worker task per connection runs its jobs in order, one REST request per code, interval and page
(:mod:`bridge.rest.paging`), through the shared budget. When a job ends, a follow-up gap record
carries its :class:`~bridge.records.BackfillReport`: what was published, what was not and why,
trades and depth always listed as ``no_history`` (REST has no history for them).

Failures: 401 and 509 stop backfill for the process (the key), 514 for the business, loudly, once;
502 pauses the job until the next UTC day; 513 ends the pager at the plan's earliest time; rate
limits are retried by the client and then, after a pause, again for as long as they last (a rate
limit passes); transport failures are retried by the client, then reported. The live stream never waits
for any of it longer than the hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta

import orjson

from bridge.backfill_jobs import Job, Line, first_live_bar
from bridge.backfill_report import Pair, build_report, epoch_seconds, floor_start, seconds_to_next_utc_day
from bridge.config_backfill import BackfillConfig
from bridge.errors import (
    MalformedPayload,
    RestCause,
    RestError,
    RestHistoryLimit,
    RestQuotaExhausted,
    RestRetriable,
    RestTerminal,
)
from bridge.metrics import BridgeMetrics
from bridge.outlet import ForwardingOutlet, Outlet
from bridge.protocol.codes import KlineInterval
from bridge.protocol.events import DataOutcome, GapClosed, Record
from bridge.protocol.normalize import normalize_kline
from bridge.protocol.requests import ConnectionPlan
from bridge.records import (
    EPOCH,
    BackfillItem,
    GapRecord,
    KlineRecord,
    Provenance,
    RecordSource,
    Stream,
)
from bridge.rest.client import RestClient
from bridge.rest.paging import KlinePager, bars_of, kline_body
from bridge.timing import Clock

log = logging.getLogger(__name__)

_KEY_WIDE = (RestCause.UNAUTHORIZED, RestCause.EXPIRED)


class Backfiller(ForwardingOutlet):
    """The outlet that backfills klines after gaps (see the module docstring).

    Args:
        outlet: where everything goes next (the publisher).
        client: the REST client, its budget shared by every connection.
        config: the ``backfill`` section.
        plans: every planned connection; those without klines are passed through untouched.
        metrics: backfill counters and gauges.
        clock: wall time for ``max_age`` and the daily quota, monotonic for the hold.
    """

    def __init__(
        self,
        outlet: Outlet,
        client: RestClient,
        config: BackfillConfig,
        plans: Iterable[ConnectionPlan],
        metrics: BridgeMetrics,
        clock: Clock | None = None,
    ) -> None:
        self._outlet = outlet
        self._client = client
        self._config = config
        self._metrics = metrics
        self._clock = clock or Clock()
        self._lines: dict[str, Line] = {}
        self._key_failure: RestError | None = None
        self._refused_businesses: dict[str, RestError] = {}
        self._closed = False
        self._sizer: asyncio.Task[None] | None = None
        self.track(plans)

    def track(self, plans: Iterable[ConnectionPlan]) -> None:
        """Backfill the kline subscriptions of these connections (the others pass through untouched)."""
        for plan in plans:
            klines = [sub for sub in plan.subscriptions if sub.stream is Stream.KLINE]
            if klines:
                intervals = tuple(dict.fromkeys(i for sub in klines for i in sub.kline_intervals))
                codes = tuple(dict.fromkeys(code for sub in klines for code in sub.codes))
                self._lines[plan.name] = Line(plan, intervals, codes)

    def start(self) -> None:
        """Size the shared budget from ``GET /package/info`` in the background (the fallback applies until then)."""
        self._sizer = asyncio.create_task(self._size_budget(), name="backfill-budget")

    async def _size_budget(self) -> None:
        budget = self._client.budget
        try:
            info = await self._client.package_info()
        except RestError as exc:
            log.warning(
                "GET /package/info failed (%s); backfill assumes the key allows %g REST requests per second "
                "(backfill.requests_per_second) and uses %g of them",
                exc, self._config.requests_per_second, budget.rate,
            )  # fmt: skip
            return
        rate = info.get("apiNumPerSec") if isinstance(info, dict) else None
        if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
            budget.resize(float(rate), self._clock.monotonic())
            log.info(
                "REST plan %s: %g requests per second for the key; backfill uses up to %g (backfill.share %g)",
                info.get("packageName", "?"), rate, budget.rate, budget.share,
            )  # fmt: skip
        else:
            log.warning("GET /package/info gave no apiNumPerSec; backfill keeps %g requests per second", budget.rate)

    # -- the Outlet protocol ------------------------------------------------------------------

    def emit(self, outcome: DataOutcome) -> None:
        """Pass one outcome on (or hold a live kline record while its connection backfills); never waits."""
        if isinstance(outcome, Record) and isinstance(outcome.record, KlineRecord):
            line = self._lines.get(outcome.record.provenance.connection_id.split("#", 1)[0])
            if line is not None and self._track(line, outcome.record):
                self._hold(line, outcome)
                return
        self._outlet.emit(outcome)
        if isinstance(outcome, GapClosed):
            self._gap_closed(outcome.gap)

    def _track(self, line: Line, record: KlineRecord) -> bool:
        """Remember the bar; returns whether the record must wait in the hold."""
        pair = (record.symbol, record.interval)
        start = epoch_seconds(record.open_time)
        if start > line.last_bar.get(pair, -1):
            line.last_bar[pair] = start
        for job in line.jobs:
            if pair not in job.first_after:
                job.first_after[pair] = start
                job.live.set()
        return line.holding

    def _hold(self, line: Line, outcome: DataOutcome) -> None:
        line.held.append(outcome)
        if len(line.held) > self._config.hold_max_records:
            self._release(line, why=f"more than {self._config.hold_max_records} live records waited")

    def _release(self, line: Line, *, why: str | None = None) -> None:
        """Let the held live records go, in arrival order, and stop holding."""
        if why is not None and line.jobs:
            log.warning(
                "backfill of %s: live klines no longer wait (%s); REST bars still to come arrive out of bar order",
                line.plan.name, why,
            )  # fmt: skip
        line.holding = False
        if line.release_timer is not None:
            line.release_timer.cancel()
            line.release_timer = None
        held, line.held = line.held, []
        for outcome in held:
            self._outlet.emit(outcome)

    def _gap_closed(self, gap: GapRecord) -> None:
        line = self._lines.get(gap.connection)
        if line is None or not gap.resolved or self._closed:
            return
        if len(line.jobs) >= self._config.max_pending_gaps:
            log.error("backfill of %s: %d gaps already wait; this one is not filled", gap.connection, len(line.jobs))
            self._report(line, Job(gap, {}), stopped=True)
            return
        lower: dict[Pair, int] = {}
        for code, interval in self._pairs(line):
            pair = (code, interval.label)
            lower[pair] = line.last_bar.get(pair, floor_start(gap.start, interval))
        line.jobs.append(Job(gap, lower))
        if not line.holding and self._config.hold_live_seconds > 0 and self._config.hold_max_records > 0:
            line.holding = True
            loop = asyncio.get_running_loop()
            line.release_timer = loop.call_later(
                self._config.hold_live_seconds,
                lambda: self._release(line, why=f"the hold's {self._config.hold_live_seconds:g}s passed"),
            )
        if line.worker is None or line.worker.done():
            line.worker = asyncio.create_task(self._work(line), name=f"backfill-{line.plan.name}")

    # -- the work ------------------------------------------------------------------------------

    @staticmethod
    def _pairs(line: Line) -> list[tuple[str, KlineInterval]]:
        return [(code, interval) for code in line.kline_codes for interval in line.intervals]

    async def _work(self, line: Line) -> None:
        """Run the connection's jobs in order until none is left; safe to cancel (:meth:`close` reports)."""
        while line.jobs:
            job = line.jobs[0]
            for code, interval in self._pairs(line):
                job.items.append(await self._fill(line, job, code, interval))
            line.jobs.popleft()
            self._report(line, job)
        self._release(line)

    async def _fill(self, line: Line, job: Job, code: str, interval: KlineInterval) -> BackfillItem:
        """Fetch, choose and publish one code and interval of one gap; returns what it did."""
        business = line.plan.business
        refused = self._key_failure or self._refused_businesses.get(business)
        if refused is not None:
            return BackfillItem(code, Stream.KLINE, interval.label, 0, refused.cause.value)
        pair = (code, interval.label)
        await first_live_bar(job, pair)
        floor = epoch_seconds(self._clock.wall()) - int(self._config.max_age_seconds)
        since = job.lower[pair]
        reason = "max_age" if since < floor else None
        pager = KlinePager(max(since, floor), self._config.page_bars)
        while not pager.done:
            body = kline_body(code, interval, pager.page_bars, pager.next_timestamp())
            try:
                data = await self._client.klines(business, body)
            except RestQuotaExhausted as exc:
                await self._pause_for_quota(exc)
                continue
            except RestRetriable as exc:
                if exc.cause is not RestCause.RATE_LIMITED:
                    log.warning(
                        "backfill of %s: %s %s given up after its retries: %s",
                        line.plan.name,
                        code,
                        interval.label,
                        exc,
                    )
                    reason = exc.cause.value
                    break
                # Rate limits pass: this pair waits (the budget is paused for every caller), the live stream does not.
                log.info(
                    "backfill of %s: still rate limited; trying again in %gs",
                    line.plan.name,
                    self._config.retry_max_seconds,
                )
                await asyncio.sleep(self._config.retry_max_seconds)
                continue
            except RestHistoryLimit as exc:
                pager.clamp(None if exc.earliest is None else epoch_seconds(exc.earliest))
                reason = reason or RestCause.HISTORY_LIMIT.value
                break
            except RestError as exc:
                self._refuse(business, exc)
                reason = exc.cause.value
                break
            bars = bars_of(data, code)
            if isinstance(bars, RestError):
                reason = bars.cause.value
                break
            pager.add(bars)
        if reason is None and not pager.covers_since():
            reason = RestCause.HISTORY_LIMIT.value
        published = self._publish(line, job, code, interval, pager.final_bars(job.first_after.get(pair)))
        return BackfillItem(code, Stream.KLINE, interval.label, published, reason)

    def _publish(
        self, line: Line, job: Job, code: str, interval: KlineInterval, bars: list[Mapping[str, object]]
    ) -> int:
        business = line.plan.business
        connection_id = f"{job.gap.next_connection_id}/rest"
        published = 0
        for bar in bars:
            line.rest_sequence += 1
            provenance = Provenance(business, connection_id, line.rest_sequence, self._clock.wall())
            try:
                record = normalize_kline({**bar, "s": code, "ty": int(interval)}, provenance)
            except MalformedPayload as exc:
                log.warning("backfill of %s: REST bar of %s skipped: %s", line.plan.name, code, exc)
                continue
            self._outlet.emit(
                Record(dataclasses.replace(record, source=RecordSource.REST), raw=orjson.dumps(bar).decode())
            )
            published += 1
            start = epoch_seconds(record.open_time)
            job.first_bar = start if job.first_bar is None else min(job.first_bar, start)
            job.last_bar = start if job.last_bar is None else max(job.last_bar, start)
        if published:
            self._metrics.backfilled_bars.labels(business, interval.label).inc(published)
        return published

    async def _pause_for_quota(self, exc: RestQuotaExhausted) -> None:
        wait = seconds_to_next_utc_day(self._clock.wall())
        log.error(
            "backfill paused for %.0fs, until the next UTC day: the key's daily REST quota is spent (%s)", wait, exc
        )
        self._metrics.rest_quota_exhausted.set(1)
        try:
            await asyncio.sleep(wait)
        finally:
            self._metrics.rest_quota_exhausted.set(0)

    def _refuse(self, business: str, exc: RestError) -> None:
        """Stop backfill for the key (401, 509) or the business (514), loudly and once; other errors end one item."""
        if not isinstance(exc, RestTerminal):
            log.warning("backfill request failed: %s", exc)
        elif exc.cause in _KEY_WIDE and self._key_failure is None:
            self._key_failure = exc
            log.error(
                "backfill stopped for every connection: the REST API refused the key (%s); the live feed goes on", exc
            )
        elif exc.cause is RestCause.NO_PERMISSION and business not in self._refused_businesses:
            self._refused_businesses[business] = exc
            log.error("backfill stopped for business %s: the plan does not cover it (%s)", business, exc)
        elif exc.cause not in _KEY_WIDE and exc.cause is not RestCause.NO_PERMISSION:
            log.error("backfill request refused: %s", exc)

    def _report(self, line: Line, job: Job, *, stopped: bool = False) -> None:
        """Publish the follow-up gap record that says what the job did (pairs it did not reach: ``stopped``)."""
        gap, items = job.gap, list(job.items)
        if stopped:
            done = {(item.symbol, item.interval) for item in items}
            items += [
                BackfillItem(code, Stream.KLINE, interval.label, 0, "stopped")
                for code, interval in self._pairs(line)
                if (code, interval.label) not in done
            ]
        first, last = (None if t is None else EPOCH + timedelta(seconds=t) for t in (job.first_bar, job.last_bar))
        report = build_report(line.plan, items, first, last)
        status, bars = report.status, report.bars
        self._metrics.backfilled_gaps.labels(gap.business, status.value).inc()
        log.info(
            "backfill of the gap on %s (%s to %s): %s, %d bars over REST%s",
            gap.connection, gap.start.isoformat(timespec="seconds"), gap.end.isoformat(timespec="seconds"),
            status.value, bars,
            "".join(f"; {i.symbol} {i.interval}: {i.reason}" for i in items if i.reason is not None),
        )  # fmt: skip
        self._outlet.emit(GapClosed(dataclasses.replace(gap, backfill=report)))

    async def close(self) -> None:
        """Stop every worker (their gaps are reported as ``stopped``), release held records; the client is shared."""
        self._closed = True
        if self._sizer is not None:
            self._sizer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sizer
        for line in self._lines.values():
            if line.worker is not None:
                line.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await line.worker
            while line.jobs:
                self._report(line, line.jobs.popleft(), stopped=True)
            self._release(line)
