"""The backfill's pure parts: lower bounds without a WebSocket bar, the daily quota's renewal, the report's status."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.backfill_report import build_report, floor_start, seconds_to_next_utc_day
from bridge.protocol.codes import KlineInterval
from bridge.protocol.requests import plan_connections
from bridge.records import BackfillItem, BackfillStatus, Stream

PLAN = plan_connections("crypto", ["BTCUSDT"], [Stream.KLINE, Stream.TRADE], [KlineInterval.MIN_1])[0]


def test_floor_start_is_the_bar_containing_the_instant() -> None:
    """Fixed intervals floor to their bar; calendar intervals reach one longest interval back."""
    instant = datetime(2026, 12, 2, 12, 34, 56, tzinfo=UTC)
    seconds = int(instant.timestamp())
    assert floor_start(instant, KlineInterval.MIN_5) == seconds - seconds % 300
    assert floor_start(instant, KlineInterval.MONTH_1) == seconds - 31 * 86400


def test_quota_renews_at_the_next_utc_midnight() -> None:
    """A quota spent at 23:00 UTC renews in an hour."""
    assert seconds_to_next_utc_day(datetime(2026, 12, 2, 23, 0, tzinfo=UTC)) == 3600


def test_status_and_no_history_items() -> None:
    """All kline items complete is full, some bars partial, none none; trades are always listed as no_history."""
    done = BackfillItem("BTCUSDT", Stream.KLINE, "1m", 4, None)
    failed = BackfillItem("BTCUSDT", Stream.KLINE, "5m", 0, "rate_limited")
    full = build_report(PLAN, [done], None, None)
    assert full.status is BackfillStatus.FULL
    assert full.items[-1] == BackfillItem("BTCUSDT", Stream.TRADE, None, 0, "no_history")
    assert build_report(PLAN, [done, failed], None, None).status is BackfillStatus.PARTIAL
    assert build_report(PLAN, [failed], None, None).status is BackfillStatus.NONE
    assert build_report(PLAN, [], None, None).status is BackfillStatus.NONE
