"""Bar starts, pure: hypothesis over every interval and instant, and the seed document's kline."""

from __future__ import annotations

from calendar import timegm
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocol.codes import KlineInterval
from bridge.simulator.bars import bar_start

FIXED_LENGTHS = {
    KlineInterval.MIN_1: 60,
    KlineInterval.MIN_5: 300,
    KlineInterval.MIN_15: 900,
    KlineInterval.MIN_30: 1800,
    KlineInterval.HOUR_1: 3600,
    KlineInterval.HOUR_2: 7200,
    KlineInterval.HOUR_4: 14400,
    KlineInterval.DAY_1: 86400,
}


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KlineInterval), st.integers(min_value=0, max_value=4_102_444_800))
def test_bar_start_is_the_aligned_start_of_the_bar_containing_the_instant(
    interval: KlineInterval, instant: int
) -> None:
    """Bars start on UTC multiples of their length, Mondays, or the first day of a month/quarter/year."""
    start = bar_start(interval, instant)
    assert start <= instant
    begins = datetime.fromtimestamp(start, tz=UTC)
    length = FIXED_LENGTHS.get(interval)
    if length is not None:
        assert start % length == 0
        assert instant < start + length
    elif interval is KlineInterval.WEEK_1:
        assert begins.weekday() == 0
        assert begins.time() == datetime.min.time()
        assert instant < start + 7 * 86400
    else:
        assert begins.day == 1
        assert begins.time() == datetime.min.time()
        at = datetime.fromtimestamp(instant, tz=UTC)
        assert begins.year == at.year
        if interval is KlineInterval.MONTH_1:
            assert begins.month == at.month
        elif interval is KlineInterval.QUARTER_1:
            assert begins.month in (1, 4, 7, 10)
            assert begins.month <= at.month < begins.month + 3
        else:
            assert begins.month == 1


def test_bar_start_matches_the_seed_documents_kline() -> None:
    """The seed's kline ``t=1751958000`` is 2025-07-08T07:00:00Z: an hour bar start, not shifted by UTC+8."""
    assert bar_start(KlineInterval.HOUR_1, 1751958000 + 1799) == 1751958000
    assert datetime.fromtimestamp(1751958000, tz=UTC) == datetime(2025, 7, 8, 7, tzinfo=UTC)
    assert bar_start(KlineInterval.MONTH_1, 1751958000) == timegm((2025, 7, 1, 0, 0, 0))
