"""The backfill outlet's hold on literal records: live klines wait while a backfill runs, within their bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry

from bridge.backfill import Backfiller
from bridge.config_backfill import BackfillConfig
from bridge.metrics import BridgeMetrics
from bridge.protocol.codes import KlineInterval
from bridge.protocol.events import GapClosed, Record
from bridge.protocol.requests import plan_connections
from bridge.records import Cause, GapRecord, KlineRecord, Provenance, Stream
from bridge.rest.budget import RequestBudget
from bridge.rest.client import RestClient
from bridge.timing import RetryPolicy
from tests.outlets import Collected

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PLAN = plan_connections("crypto", ["BTCUSDT"], [Stream.KLINE], [KlineInterval.MIN_1])[0]


def bar(minute: int, sequence: int) -> Record:
    """A live 1m bar of BTCUSDT on crypto-0."""
    one = Decimal(1)
    record = KlineRecord(
        "BTCUSDT", "1m", T0 + timedelta(minutes=minute), one, one, one, one, one, one, None, None,
        Provenance("crypto", "crypto-0#2@run", sequence, T0),
    )  # fmt: skip
    return Record(record, "")


def gap() -> GapClosed:
    """A resolved gap of crypto-0."""
    return GapClosed(
        GapRecord("crypto", "crypto-0", ("BTCUSDT",), (Stream.KLINE,), T0, T0, Cause.CLOSED, None, True, "a", "b")
    )


async def test_live_klines_wait_up_to_the_bound_then_flow_and_stop_reports_stopped() -> None:
    """During a backfill live klines wait; one past hold_max_records releases them in arrival order; stopping the
    bridge before the backfill ends publishes the follow-up report with the kline item stopped."""
    collected = Collected()
    # Port 9 (discard) refuses: requests fail as transport errors, retried slowly, so the backfill stays in flight.
    client = RestClient("http://127.0.0.1:9", "k", RequestBudget(1, 1, 0.0), retry=RetryPolicy(5, 5), attempts=5)
    config = BackfillConfig(hold_live_seconds=60, hold_max_records=3)
    backfiller = Backfiller(collected, client, config, [PLAN], BridgeMetrics(CollectorRegistry()))
    backfiller.emit(bar(0, 1))
    backfiller.emit(gap())
    for minute in range(1, 4):
        backfiller.emit(bar(minute, minute + 1))
    assert [type(o).__name__ for o in collected.outcomes] == ["Record", "GapClosed"]
    backfiller.emit(bar(4, 5))
    released = [o.record.event_time.minute for o in collected.outcomes[2:] if isinstance(o, Record)]
    assert released == [1, 2, 3, 4]
    await backfiller.close()
    follow_up = collected.outcomes[-1]
    assert isinstance(follow_up, GapClosed)
    assert follow_up.gap.backfill is not None
    assert [(item.stream, item.reason) for item in follow_up.gap.backfill.items] == [(Stream.KLINE, "stopped")]
