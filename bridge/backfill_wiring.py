"""Building the backfill from the configuration: the shared budget, the REST client and the outlet."""

from __future__ import annotations

from bridge.backfill import Backfiller
from bridge.config import BridgeConfig
from bridge.feed import Outlet
from bridge.metrics import BridgeMetrics
from bridge.records import Stream
from bridge.rest.budget import RequestBudget
from bridge.rest.client import RestClient
from bridge.timing import Clock, RetryPolicy


def build_backfiller(
    config: BridgeConfig, outlet: Outlet, metrics: BridgeMetrics, clock: Clock | None = None
) -> Backfiller | None:
    """The backfill outlet in front of ``outlet``, or ``None`` when nothing needs it (off, or no klines)."""
    wanted = any(Stream.KLINE in entry.streams for entry in config.source.subscriptions)
    section = config.backfill
    if not section.enabled or not wanted:
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
    return Backfiller(outlet, client, section, (), metrics, clock)
