"""Every Prometheus metric the bridge exports, built against one injected registry.

Names are the contract (README, "Metrics"); labels never carry the API key or an unbounded
value such as a raw frame or a symbol. Tests build :class:`BridgeMetrics` on a fresh
:class:`~prometheus_client.CollectorRegistry`, so nothing leaks between them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.records import Stream

if TYPE_CHECKING:
    from bridge.serialize import KafkaMessage

# Market-data lag runs from well under a millisecond (loopback) to minutes (a stalled feed,
# a bar's age for klines): the buckets span both, denser where healthy feeds live. 10-50 ms, where
# a healthy feed's p99 receipt-to-ack lies, is split finely enough that a quantile interpolated
# within a bucket is off by a few milliseconds, and 20 ms and 50 ms (common targets) are bounds.
LAG_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 86400.0,
)  # fmt: skip


class SpoolView(Protocol):
    """What the spool gauges read of a spool (a sharded replica has one spool per shard it owns)."""

    @property
    def size_bytes(self) -> int: ...
    @property
    def pending(self) -> int: ...
    def oldest_age(self) -> float: ...


class BridgeMetrics:
    """The bridge's metrics; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        prefix = "infoway_bridge_"
        self.frames_received = Counter(
            prefix + "frames_received",
            "Frames read from vendor sockets, by kind (push_trade, push_depth, push_kline, ack, "
            "error, notice, garbage).",
            ["business", "kind"],
            registry=registry,
        )
        self.records_produced = Counter(
            prefix + "records_produced", "Records acknowledged by Kafka.", ["topic"], registry=registry
        )
        self.produce_failures = Counter(
            prefix + "produce_failures",
            "Records Kafka did not take, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.event_lag = Histogram(
            prefix + "event_lag_seconds",
            "Kafka acknowledgement time minus the vendor's event time.",
            ["business", "stream"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.pipeline_latency = Histogram(
            prefix + "pipeline_latency_seconds",
            "Kafka acknowledgement time minus the time the frame was read from the socket.",
            ["stream"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.reconnects = Counter(
            prefix + "reconnects",
            "Vendor reconnects, by cause (closed, socket_error, timeout, handshake, http_refused, vendor_error, "
            "stale, error) and the vendor code or HTTP status behind it (empty when none).",
            ["business", "reason", "code"],
            registry=registry,
        )
        self.vendor_errors = Counter(
            prefix + "vendor_errors",
            "Vendor error frames and refused handshakes, by code or HTTP status.",
            ["business", "code"],
            registry=registry,
        )
        self.terminal_errors = Counter(
            prefix + "terminal_errors",
            "Connections stopped for good by a terminal vendor error or refused handshake, by code or status.",
            ["business", "code"],
            registry=registry,
        )
        self.connection_up = Gauge(
            prefix + "connection_up",
            "1 while a vendor connection is open, else 0.",
            ["business", "connection"],
            registry=registry,
        )
        self.subscribed_codes = Gauge(
            prefix + "subscribed_codes",
            "Codes acknowledged by the vendor, by stream.",
            ["business", "stream"],
            registry=registry,
        )
        self.last_event_timestamp = Gauge(
            prefix + "last_event_timestamp_seconds",
            "The vendor event time of the latest record, as a Unix timestamp.",
            ["business", "stream"],
            registry=registry,
        )
        self.dead_letters = Counter(
            prefix + "dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.spool_bytes = Gauge(
            prefix + "spool_bytes", "Bytes in the spool (segment files and the write buffer).", registry=registry
        )
        self.spool_records = Gauge(
            prefix + "spool_records", "Records in the spool not yet acknowledged by Kafka.", registry=registry
        )
        self.spool_oldest_record_age = Gauge(
            prefix + "spool_oldest_record_age_seconds",
            "Age of the oldest record not yet acknowledged by Kafka (0 when the spool is empty).",
            registry=registry,
        )
        self.spool_written = Counter(
            prefix + "spool_written_records", "Records appended to the spool.", registry=registry
        )
        self.spool_drained = Counter(
            prefix + "spool_drained_records",
            "Records read from the spool to be produced (retries included).",
            registry=registry,
        )
        self.spool_sync_seconds = Histogram(
            prefix + "spool_sync_seconds",
            "Time to write out the spool's buffer and fsync it.",
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=registry,
        )
        self.spool_dropped = Counter(
            prefix + "spool_dropped_records",
            "Records lost undelivered: when_full (drop-oldest made room), kafka_lost (Kafka lost acknowledged "
            "records the bridge no longer held).",
            ["reason"],
            registry=registry,
        )
        self.spool_damaged = Counter(
            prefix + "spool_damaged_records",
            "Damaged spool entries skipped (bad CRC, torn write), by kind.",
            ["kind"],
            registry=registry,
        )
        self.spool_write_errors = Counter(
            prefix + "spool_write_errors",
            "Failed writes to the spool directory (full disk, I/O error).",
            registry=registry,
        )
        self.gap_seconds = Counter(
            prefix + "gap_seconds",
            "Seconds during which a subscription was not being received.",
            ["business"],
            registry=registry,
        )
        self._spools: list[SpoolView] = []
        self.spool_bytes.set_function(lambda: sum(spool.size_bytes for spool in self._spools))
        self.spool_records.set_function(lambda: sum(spool.pending for spool in self._spools))
        self.spool_oldest_record_age.set_function(lambda: max((s.oldest_age() for s in self._spools), default=0.0))
        self.sharding_info = Gauge(
            prefix + "sharding_info", "1, labelled with the sharding mode and group (group: empty unsharded).",
            ["mode", "group"], registry=registry,
        )  # fmt: skip
        self.shards_total = Gauge(
            prefix + "shards_total", "Shards the configured codes are split into (1 when unsharded).", registry=registry
        )
        self.shards_owned = Gauge(prefix + "shards_owned", "Shards this replica owns and reads now.", registry=registry)
        self.shard_owned = Gauge(
            prefix + "shard_owned", "1 for each shard this replica owns (label: the shard's number).", ["shard"],
            registry=registry,
        )  # fmt: skip
        self.codes_owned = Gauge(
            prefix + "codes_owned", "Codes this replica subscribes (those of the shards it owns).", registry=registry
        )
        self.shard_handoffs = Counter(
            prefix + "shard_handoffs",
            "Shards this replica gained or lost, by direction; taken_over: a previous owner that did not release it.",
            ["direction"],
            registry=registry,
        )
        self.rest_requests = Counter(
            prefix + "rest_requests",
            "REST requests to the vendor, each attempt, by endpoint (kline, depth, package_info) and outcome "
            "(ok, or why not: rate_limited, transport, quota_exhausted, history_limit, unauthorized, expired, "
            "no_permission, unknown_codes, bad_request, server_error).",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.backfilled_bars = Counter(
            prefix + "backfilled_bars",
            "Kline bars fetched over REST after a gap and published with source REST.",
            ["business", "interval"],
            registry=registry,
        )
        self.backfilled_gaps = Counter(
            prefix + "backfilled_gaps",
            "Gaps whose backfill finished, by result: full, partial or none.",
            ["business", "result"],
            registry=registry,
        )
        self.rest_quota_remaining = Gauge(
            prefix + "rest_quota_remaining_requests",
            "REST requests this process may start now without waiting: its budget's tokens (0 while paused by a rate "
            "limit or a spent daily quota).",
            registry=registry,
        )
        self.rest_quota_exhausted = Gauge(
            prefix + "rest_quota_exhausted",
            "1 while backfill is paused until the next UTC day because the key's daily REST quota is spent (502).",
            registry=registry,
        )

    def watch_spool(self, spool: SpoolView) -> None:
        """Count ``spool`` in the spool gauges (until :meth:`forget_spool`)."""
        self._spools.append(spool)

    def forget_spool(self, spool: SpoolView) -> None:
        """Stop counting ``spool`` (its shard went to another replica)."""
        if spool in self._spools:
            self._spools.remove(spool)

    def observe_acknowledged(self, messages: list[KafkaMessage], acknowledged_at: datetime) -> None:
        """Count records Kafka acknowledged at ``acknowledged_at``, and their lag, per topic and stream.

        One round's records are grouped by label set first, so each child is looked up once per
        round and its histogram buckets are added to once per bucket (:func:`observe_many`).
        """
        counts: dict[str, int] = {}
        lags: dict[tuple[str, Stream], list[float]] = {}
        latencies: dict[Stream, list[float]] = {}
        last: KafkaMessage | None = None
        for message in messages:
            counts[message.topic] = counts.get(message.topic, 0) + 1
            stream, event_time = message.stream, message.event_time
            if stream is None or event_time is None:
                continue
            last = message
            key = (message.business or "", stream)
            found = lags.get(key)
            if found is None:
                found = lags[key] = []
            found.append((acknowledged_at - event_time).total_seconds())
            received = latencies.get(stream)
            if received is None:
                received = latencies[stream] = []
            received.append((acknowledged_at - message.received_time).total_seconds())
        for topic, count in counts.items():
            self._child(self.records_produced, (topic,)).inc(count)
        for (business, stream), values in lags.items():
            observe_many(self._child(self.event_lag, (business, stream.value)), values)
        for stream, values in latencies.items():
            observe_many(self._child(self.pipeline_latency, (stream.value,)), values)
        if last is not None and last.stream is not None and last.event_time is not None:
            gauge = self._child(self.last_event_timestamp, (last.business or "", last.stream.value))
            gauge.set(last.event_time.timestamp())

    def _child(self, metric: _Metric, labels: tuple[str, ...]) -> Any:
        """``metric.labels(*labels)``, bound once per label set (``labels()`` costs microseconds a call)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


_Metric = Counter | Gauge | Histogram


def observe_many(child: Histogram, values: list[float]) -> None:
    """What ``child.observe(value)`` for each of ``values`` does, with one addition per bucket touched.

    prometheus_client keeps a histogram's buckets non-cumulative (``observe`` adds 1 to the first
    bucket whose bound is at least the value) and a sum; this does the same in a batch. It reads
    the child's ``_upper_bounds``, ``_buckets`` and ``_sum``: a test compares it with ``observe``,
    so a release of prometheus_client that changes them fails there, not in production.
    """
    bounds = child._upper_bounds
    per_bucket: dict[int, int] = {}
    for value in values:
        index = bisect_left(bounds, value)
        per_bucket[index] = per_bucket.get(index, 0) + 1
    child._sum.inc(math.fsum(values))
    buckets = child._buckets
    for index, count in per_bucket.items():
        buckets[index].inc(count)


class FrameCounter:
    """``frames_received`` of one business, counted locally and added to the counter every ``interval`` seconds.

    A connection reads tens of thousands of frames a second; a child's ``inc`` takes a lock each
    time. The counts are added when ``interval`` has passed since the last addition (on the
    monotonic time each frame is read at) and by :meth:`flush` when the reader ends.
    """

    def __init__(self, metrics: BridgeMetrics, business: str, interval: float = 0.5) -> None:
        self._counter = metrics.frames_received
        self._business = business
        self._interval = interval
        self._pending: dict[str, int] = {}
        self._children: dict[str, Any] = {}
        self._flushed_at = -math.inf

    def count(self, kind: str, now: float) -> None:
        """One frame of ``kind`` read at monotonic time ``now``."""
        pending = self._pending
        pending[kind] = pending.get(kind, 0) + 1
        if now - self._flushed_at >= self._interval:
            self._flushed_at = now
            self.flush()

    def flush(self) -> None:
        """Add the counts gathered so far to the counter."""
        for kind, count in self._pending.items():
            child = self._children.get(kind)
            if child is None:
                child = self._children[kind] = self._counter.labels(self._business, kind)
            child.inc(count)
        self._pending.clear()


def counter_totals(registry: CollectorRegistry, name: str, label: str) -> dict[str, float]:
    """A counter's current values summed per value of one label (``name`` without ``_total``)."""
    totals: dict[str, float] = {}
    for family in registry.collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == name + "_total":
                key = sample.labels.get(label, "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def histogram_buckets(registry: CollectorRegistry, name: str, **match: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound, summed over label sets matching ``match``."""
    buckets: dict[float, float] = {}
    for family in registry.collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name != name + "_bucket":
                continue
            if any(sample.labels.get(key) != value for key, value in match.items()):
                continue
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def bucket_quantile(buckets: dict[float, float], quantile: float) -> tuple[float | None, float]:
    """Estimate a quantile from cumulative buckets, interpolating as PromQL's ``histogram_quantile`` does.

    Returns the estimate (``None`` when there are no observations) and the observation count.
    Pass the difference of two snapshots to get the quantile over the interval between them.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None, 0.0
    total = buckets[bounds[-1]]
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower, total
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share, total
        lower, below = bound, count
    return lower, total


def histogram_quantile(
    registry: CollectorRegistry, name: str, quantile: float, **match: str
) -> tuple[float | None, float]:
    """A quantile over everything a histogram observed so far (see :func:`bucket_quantile`)."""
    return bucket_quantile(histogram_buckets(registry, name, **match), quantile)
