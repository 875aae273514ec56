"""The pure timing rules: how long a delivery round lingers for more records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.timing import remaining_linger


def test_a_round_waits_for_more_records_only_until_the_oldest_is_max_wait_ms_old() -> None:
    """The linger counts from the oldest record's receipt, as Kafka's linger.ms does from a batch's first record.

    Records that arrived while the last round was in flight have waited already: they go at once.
    """
    received = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert remaining_linger(5, received, received) == 0.005
    assert remaining_linger(5, received, received + timedelta(milliseconds=3)) == pytest.approx(0.002)
    assert remaining_linger(5, received, received + timedelta(milliseconds=12)) <= 0
    assert remaining_linger(0, received, received) == 0


def test_a_wall_clock_stepped_back_never_makes_a_round_wait_longer_than_max_wait_ms() -> None:
    """A record stamped after 'now' (the clock stepped back in between) waits the configured time, no more."""
    received = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert remaining_linger(5, received, received - timedelta(seconds=30)) == 0.005
