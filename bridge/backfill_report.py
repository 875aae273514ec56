"""The pure parts of the backfill: a gap's lower bound without a WebSocket bar, the quota's renewal, the report.

No I/O and no clock: :mod:`bridge.backfill` passes the instants in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bridge.protocol.codes import KlineInterval
from bridge.protocol.requests import ConnectionPlan
from bridge.records import EPOCH, BackfillItem, BackfillReport, BackfillStatus, Stream

# Interval lengths for the lower bound when no WebSocket bar was seen; calendar intervals take their longest.
_SECONDS = {1: 60, 2: 300, 3: 900, 4: 1800, 5: 3600, 6: 7200, 7: 14400, 8: 86400, 9: 604800}
_LONGEST = {10: 31 * 86400, 11: 92 * 86400, 12: 366 * 86400}

Pair = tuple[str, str]
"""(symbol, interval label)."""


def epoch_seconds(instant: datetime) -> int:
    """Whole seconds since the Unix epoch (REST bar starts are in seconds)."""
    return int((instant - EPOCH).total_seconds())


def floor_start(instant: datetime, interval: KlineInterval) -> int:
    """The bar containing ``instant`` for fixed intervals; one longest interval before it for calendar ones."""
    seconds = epoch_seconds(instant)
    length = _SECONDS.get(int(interval))
    return seconds - seconds % length if length is not None else seconds - _LONGEST[int(interval)]


def seconds_to_next_utc_day(now: datetime) -> float:
    """Seconds from ``now`` to the next 00:00 UTC, when the vendor's daily quota renews."""
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - now).total_seconds(), 1.0)


def build_report(
    plan: ConnectionPlan, items: Sequence[BackfillItem], first: datetime | None, last: datetime | None
) -> BackfillReport:
    """What a gap's backfill did: its kline items, plus every trade and depth code as ``no_history``.

    ``full`` when every kline item is complete, ``partial`` when some bars were published, else ``none``.
    """
    unfillable = [
        BackfillItem(code, sub.stream, None, 0, "no_history")
        for sub in plan.subscriptions
        if sub.stream is not Stream.KLINE
        for code in sub.codes
    ]
    bars = sum(item.bars for item in items)
    if items and all(item.reason is None for item in items):
        status = BackfillStatus.FULL
    elif bars:
        status = BackfillStatus.PARTIAL
    else:
        status = BackfillStatus.NONE
    return BackfillReport(status, bars, (*items, *unfillable), first, last)
