"""The records the sink keeps for a broker that loses acknowledged transactions, and how a settlement is told (pure)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from bridge.positions import Resumption
from bridge.records import Stream
from bridge.serialize import KafkaMessage
from bridge.settling import RecentRecords, report_settled
from bridge.spool import Entry

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def entries(first: int, last: int) -> list[Entry]:
    """Spool entries ``first`` to ``last`` (inclusive), each a tiny record."""
    message = KafkaMessage("t", b"K", b"v", (), Stream.TRADE, "crypto", NOW, NOW)
    return [(offset, message) for offset in range(first, last + 1)]


def test_the_kept_records_are_the_newest_within_the_limit() -> None:
    """Rounds added in order: the oldest are forgotten past the limit, and a range is answered in offset order."""
    recent = RecentRecords(limit=100)
    assert (recent.oldest, recent.between(0, 10)) == (0, [])
    recent.add(entries(1, 60))
    recent.add(entries(61, 150))
    assert recent.oldest == 51
    assert [offset for offset, _ in recent.between(140, 145)] == [141, 142, 143, 144, 145]
    assert [offset for offset, _ in recent.between(0, 52)] == [51, 52]


@given(st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(1, 200))
def test_never_more_than_the_limit_and_always_the_last_ones(round_sizes: list[int], limit: int) -> None:
    """Whatever the rounds, the records kept are the last ``limit`` acknowledged, with no hole."""
    recent, next_offset = RecentRecords(limit=limit), 1
    for size in round_sizes:
        recent.add(entries(next_offset, next_offset + size - 1))
        next_offset += size
    kept = [offset for offset, _ in recent.between(0, next_offset)]
    assert kept == list(range(max(1, next_offset - limit), next_offset))


def test_each_settlement_is_told_and_records_lost_for_good_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing again is INFO; records sent again, or the topics unreadable, are WARNING; those no longer held are an
    ERROR and counted under kafka_lost."""
    caplog.set_level(logging.INFO, "bridge.settling")
    registry = CollectorRegistry()
    metrics = BridgeMetrics(registry)
    report_settled(Resumption(300, 0, 0), 300, "spool /s", metrics)
    report_settled(Resumption(300, 0, 0, confirmed=False), 300, "spool /s", metrics)
    report_settled(Resumption(200, 100, 40), 300, "spool /s", metrics)
    levels = [(record.levelname, record.getMessage().split(": ", 1)[0]) for record in caplog.records]
    assert levels == [("INFO", "spool /s"), ("WARNING", "spool /s"), ("WARNING", "spool /s"), ("ERROR", "spool /s")]
    assert "nothing is delivered again" in caplog.records[0].getMessage()
    assert "trusting what was acknowledged" in caplog.records[1].getMessage()
    assert "Kafka lost 100 record(s)" in caplog.records[2].getMessage()
    assert "(offsets 201 to 240)" in caplog.records[3].getMessage()
    dropped = registry.get_sample_value("infoway_bridge_spool_dropped_records_total", {"reason": "kafka_lost"})
    assert dropped == 40
