"""The summary lines, built from a metrics registry filled by hand."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from bridge.reporting import Summaries


def test_periodic_lines_cover_their_interval_and_the_final_one_the_run() -> None:
    """Records and dead letters per interval with the running total; the final line covers everything."""
    metrics = BridgeMetrics(CollectorRegistry())
    summaries = Summaries(metrics.registry)
    metrics.records_produced.labels("infoway.trades").inc(100)
    metrics.event_lag.labels("crypto", "trade").observe(4.0)
    first = summaries.line(final=False, subscribed=2, connections=2)
    assert first.startswith("summary since the last one: +100 records (infoway.trades +100), 100 in all;")
    assert "trade p50=" in first
    assert first.endswith("dead letters +0; connections subscribed 2/2")
    metrics.records_produced.labels("infoway.trades").inc(5)
    metrics.dead_letters.labels("not_json").inc(2)
    second = summaries.line(final=False, subscribed=1, connections=2)
    assert "+5 records (infoway.trades +5), 105 in all" in second
    assert "dead letters +2" in second
    assert "event lag n/a (no records)" in second, "no lag observed in this interval"
    final = summaries.line(final=True, subscribed=2, connections=2)
    assert final.startswith("final summary: 105 records over the run (infoway.trades 105);")
    assert "trade p50=" in final
    assert final.endswith("dead letters 2; connections subscribed at the stop 2/2")


def test_an_empty_run_says_so() -> None:
    """With nothing produced, the lines say "0 records" and "no records" rather than inventing numbers."""
    summaries = Summaries(BridgeMetrics(CollectorRegistry()).registry)
    assert summaries.line(final=True, subscribed=0, connections=1) == (
        "final summary: 0 records over the run; event lag over the run n/a (no records); dead letters 0; "
        "connections subscribed at the stop 0/1"
    )
