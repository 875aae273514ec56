"""Building the REST side from the configuration: the shared budget, the client, and the outlets in front of the
publisher (kline backfill, then depth snapshots), owned as one unit."""

from __future__ import annotations

from collections.abc import Iterable

from bridge.backfill import Backfiller
from bridge.config import BridgeConfig
from bridge.metrics import BridgeMetrics
from bridge.outlet import Outlet
from bridge.protocol.requests import ConnectionPlan
from bridge.records import Stream
from bridge.rest.budget import RequestBudget
from bridge.rest.client import RestClient
from bridge.snapshot import DepthSnapshots
from bridge.timing import Clock, RetryPolicy


class RestSide:
    """The REST outlets of one shard unit: its feeds emit into :attr:`outlet`; track and close them together."""

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

    async def close(self) -> None:
        """Stop the backfill (its gaps reported ``stopped``) and snapshots in flight."""
        if self.snapshots is not None:
            await self.snapshots.close()
        await self.backfiller.close()


class RestShared:
    """What every unit of the process shares: one REST client and one request budget, sized once."""

    def __init__(
        self, config: BridgeConfig, client: RestClient, wanted: frozenset[tuple[str, str]], metrics: BridgeMetrics,
        clock: Clock,
    ) -> None:  # fmt: skip
        self._config = config
        self.client = client
        self._wanted = wanted
        self._metrics = metrics
        self._clock = clock
        self._sized = False

    def side_for(self, outlet: Outlet) -> RestSide:
        """The REST outlets in front of one unit's ``outlet``; the first one also sizes the shared budget."""
        snapshots = DepthSnapshots(outlet, self.client, self._wanted, self._clock) if self._wanted else None
        backfiller = Backfiller(snapshots or outlet, self.client, self._config.backfill, (), self._metrics, self._clock)
        if not self._sized:
            self._sized = True
            backfiller.start()  # GET /package/info in the background
        return RestSide(backfiller, snapshots)

    async def close(self) -> None:
        """Close the client (after every unit's side is closed)."""
        await self.client.aclose()


def build_rest(config: BridgeConfig, metrics: BridgeMetrics, clock: Clock | None = None) -> RestShared | None:
    """The process's REST side, or ``None`` when nothing needs it (off, or no klines nor snapshots)."""
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
    return RestShared(config, client, wanted, metrics, clock)
