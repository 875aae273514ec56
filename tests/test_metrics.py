"""Metrics counted in batches: the same samples as one call per record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from bridge.metrics import LAG_BUCKETS, BridgeMetrics, FrameCounter, observe_many
from bridge.records import Stream
from bridge.serialize import KafkaMessage


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a registry, by name and labels (timestamps of creation left out)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@given(st.lists(st.floats(min_value=-10, max_value=1e6, allow_nan=False), max_size=50))
def test_observe_many_is_observe_for_each(values: list[float]) -> None:
    """A batch lands in the same buckets, with the same count and sum, as observing each value (bounds included)."""
    values = [*values, *LAG_BUCKETS[:3]]
    one, batch = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("lag_seconds", "h", buckets=LAG_BUCKETS, registry=one)
    by_batch = Histogram("lag_seconds", "h", buckets=LAG_BUCKETS, registry=batch)
    for value in values:
        by_one.observe(value)
    observe_many(by_batch, values)
    expected, found = samples(one), samples(batch)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(found[key] - value) <= 1e-6 * max(1.0, abs(value)), key


def test_acknowledged_records_are_counted_per_label_set() -> None:
    """A round of mixed records counts per topic and observes each stream's lag once per record."""
    metrics = BridgeMetrics(CollectorRegistry())
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    trade = KafkaMessage("t", b"k", b"v", (), Stream.TRADE, "crypto", now - timedelta(seconds=1), now)
    depth = KafkaMessage("d", b"k", b"v", (), Stream.DEPTH, "stock", now - timedelta(seconds=2), now)
    letter = KafkaMessage("dlq", None, b"v", (), None, None, None, now)
    metrics.observe_acknowledged([trade, depth, trade, letter], now + timedelta(milliseconds=3))
    found = samples(metrics.registry)
    assert found[("infoway_bridge_records_produced_total", (("topic", "t"),))] == 2
    assert found[("infoway_bridge_records_produced_total", (("topic", "dlq"),))] == 1
    lag = ("infoway_bridge_event_lag_seconds_count", (("business", "crypto"), ("stream", "trade")))
    assert found[lag] == 2
    assert found[("infoway_bridge_pipeline_latency_seconds_count", (("stream", "depth"),))] == 1
    last = ("infoway_bridge_last_event_timestamp_seconds", (("business", "crypto"), ("stream", "trade")))
    assert found[last] == (now - timedelta(seconds=1)).timestamp()


def test_frame_counts_reach_the_counter_within_the_interval_and_at_the_end() -> None:
    """Frames are added to the counter at most an interval late, and all of them once the reader flushes."""
    metrics = BridgeMetrics(CollectorRegistry())
    counter = FrameCounter(metrics, "crypto", interval=1.0)
    key = ("infoway_bridge_frames_received_total", (("business", "crypto"), ("kind", "push_trade")))
    counter.count("push_trade", 10.0)
    assert samples(metrics.registry)[key] == 1
    for step in range(5):
        counter.count("push_trade", 10.1 + step / 10)
    assert samples(metrics.registry)[key] == 1
    counter.count("push_trade", 11.0)
    assert samples(metrics.registry)[key] == 7
    counter.count("push_trade", 11.2)
    counter.flush()
    assert samples(metrics.registry)[key] == 8
