"""Where the simulator's bars start: UTC-aligned intervals, Monday weeks, calendar months, quarters and years."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from bridge.protocol.codes import KlineInterval

_FIXED_SECONDS: dict[KlineInterval, int] = {
    KlineInterval.MIN_1: 60,
    KlineInterval.MIN_5: 300,
    KlineInterval.MIN_15: 900,
    KlineInterval.MIN_30: 1800,
    KlineInterval.HOUR_1: 3600,
    KlineInterval.HOUR_2: 7200,
    KlineInterval.HOUR_4: 14400,
    KlineInterval.DAY_1: 86400,
}
_WEEK_SECONDS = 7 * 86400
# 1970-01-01 was a Thursday: weeks start on the Monday 3 days earlier, -259200 s.
_FIRST_MONDAY = -3 * 86400


def bar_seconds(interval: KlineInterval) -> int:
    """The length of a bar of ``interval`` in seconds; a day for weeks and longer (a step, not a length)."""
    return _FIXED_SECONDS.get(interval, 86400)


def bar_start(interval: KlineInterval, epoch_seconds: int) -> int:
    """The start (epoch seconds, UTC) of the bar of ``interval`` that contains ``epoch_seconds``.

    Bars up to a day are aligned on UTC multiples of their length; weeks start on Monday 00:00
    UTC; months, quarters and years on their first day at 00:00 UTC. The vendor's timestamps
    are plain Unix instants (protocol page, "Timestamps"), so nothing is shifted by UTC+8.
    """
    length = _FIXED_SECONDS.get(interval)
    if length is not None:
        return epoch_seconds - epoch_seconds % length
    if interval is KlineInterval.WEEK_1:
        return epoch_seconds - (epoch_seconds - _FIRST_MONDAY) % _WEEK_SECONDS
    day = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    if interval is KlineInterval.MONTH_1:
        first_month = day.month
    elif interval is KlineInterval.QUARTER_1:
        first_month = day.month - (day.month - 1) % 3
    else:
        first_month = 1
    return calendar.timegm((day.year, first_month, 1, 0, 0, 0))
