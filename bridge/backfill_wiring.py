"""Building the REST side from the configuration: the shared budget, the client, and the outlets in front of the
publisher (kline backfill, then depth snapshots), owned as one unit."""

from __future__ import annotations

from collections.abc import Iterable

from bridge.backfill import Backfiller
from bridge.config import BridgeConfig
from bridge.feed import Outlet
from bridge.metrics import BridgeMetrics
from bridge.protocol.requests import ConnectionPlan
from bridge.records import Stream
from bridge.rest.budget import RequestBudget
from bridge.rest.client import RestClient
from bridge.snapshot import DepthSnapshots
from bridge.timing import Clock, RetryPolicy


class RestSide:
    """The REST outlets of one process: feeds emit into :attr:`outlet`; start, track and close them together."""

    def __init__(self, backfiller: Backfiller, snapshots: DepthSnapshots | None) -> None:
        self.backfiller = backfiller
        self.snapshots = snapshots

    @property
    def outlet(self) -> Outlet:
        """Where the feeds emit: the backfill, whose next outlet is the snapshots (if any), then the publisher."""
        return self.backfiller

    def track(self, plans: Iterable[ConnectionPlan]) -> None:
        """Watch these planned connections."""
        planned = tuple(plans)
        self.backfiller.track(planned)
        if self.snapshots is not None:
            self.snapshots.track(planned)

    def start(self) -> None:
        """Size the budget from ``/package/info`` in the background."""
        self.backfiller.start()

    async def close(self) -> None:
        """Stop the backfill (its gaps reported ``stopped``) and snapshots in flight, then close the client."""
        if self.snapshots is not None:
            await self.snapshots.close()
        await self.backfiller.close()


def build_backfiller(
    config: BridgeConfig, outlet: Outlet, metrics: BridgeMetrics, clock: Clock | None = None
) -> RestSide | None:
    """The REST side in front of ``outlet``, or ``None`` when nothing needs it (off, or no klines nor snapshots)."""
    entries = config.source.subscriptions
    klines = any(Stream.KLINE in entry.streams for entry in entries)
    wanted = frozenset(
        (entry.business, code)
        for entry in entries
        if entry.snapshot_on_reconnect and Stream.DEPTH in entry.streams
        for code in entry.codes
    )
    section = config.backfill
    if not section.enabled or not (klines or wanted):
        return None
    clock = clock or Clock()
    budget = RequestBudget(section.requests_per_second, section.share, clock.monotonic())

    def observe(endpoint: str, outcome: str) -> None:
        metrics.rest_requests.labels(endpoint, outcome).inc()
        metrics.rest_quota_remaining.set(budget.available(clock.monotonic()))

    client = RestClient(
        config.source.rest_url,
        config.source.api_key.get_secret_value(),
        budget,
        retry=RetryPolicy(section.retry_initial_seconds, section.retry_max_seconds),
        attempts=section.attempts,
        timeout=section.timeout_seconds,
        clock=clock,
        observe=observe,
    )
    metrics.rest_quota_remaining.set(budget.available(clock.monotonic()))
    snapshots = DepthSnapshots(outlet, client, wanted, clock) if wanted else None
    return RestSide(Backfiller(snapshots or outlet, client, section, (), metrics, clock), snapshots)
