"""Metrics, health endpoints and logs, scraped over HTTP from a running bridge under vendor faults."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge.logs import JsonFormatter
from bridge.metrics import BridgeMetrics, bucket_quantile, histogram_buckets, histogram_quantile
from bridge.simulator import GatewayRules, Simulator, SimulatorOptions
from tests.harness import API_KEY, RunningBridge, bridge_config, eventually


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    """GET a path of the bridge's HTTP endpoint: status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in found.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


async def test_metrics_under_vendor_faults_over_http(kafka_bootstrap: str) -> None:
    """Scraped over HTTP: 513, 501 and a refused 429 counted by code, reconnects by reason, lag count = records."""
    rules = GatewayRules(heartbeat_timeout=1.0, fail_subscribe_nth=2, refuse_handshake_status=429, refuse_handshakes=1)
    options = SimulatorOptions(port=0, api_key=API_KEY, rate=300, rules=rules)
    async with Simulator(options) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"]}],
            source={"heartbeat_interval_seconds": 30},
        )  # fmt: skip
        async with RunningBridge(config) as running:
            await eventually(lambda: running.bridge.metrics_port is not None, what="the metrics endpoint")
            port = running.bridge.metrics_port
            assert port is not None
            assert await asyncio.to_thread(scrape, port, "/healthz") == (200, "ok\n")
            registry = running.bridge.metrics.registry

            def errors(code: str) -> float:
                value = registry.get_sample_value(
                    "infoway_bridge_vendor_errors_total", {"business": "crypto", "code": code}
                )
                return value or 0.0

            # The order is fixed: 429 refuses the first handshake, the 513 ends the second
            # connection, and the 501 answers the second subscribe on the third.
            await eventually(lambda: errors("501") >= 1, timeout=30, what="the 429, the 513 and then the 501")
            await eventually(lambda: running.bridge.readiness()[0], timeout=30, what="subscribed again")
            await eventually(lambda: running.delivered > 200, what="records produced")
            _, live = await asyncio.to_thread(scrape, port)
            assert "infoway_bridge_event_lag_seconds_bucket" in live
            await running.stop()
            text = exposition_after_stop(running)
    found = samples(text)
    for code in ("513", "501", "429"):
        assert total(found, "infoway_bridge_vendor_errors_total", business="crypto", code=code) >= 1, code
    for reason, code in (("vendor_error", "513"), ("vendor_error", "501"), ("http_refused", "429")):
        assert total(found, "infoway_bridge_reconnects_total", business="crypto", reason=reason, code=code) >= 1, code
    produced = total(found, "infoway_bridge_records_produced_total", topic=config.kafka.topics.trade)
    assert produced > 200
    assert total(found, "infoway_bridge_event_lag_seconds_count", business="crypto", stream="trade") == produced
    assert total(found, "infoway_bridge_pipeline_latency_seconds_count", stream="trade") == produced
    assert total(found, "infoway_bridge_frames_received_total", business="crypto", kind="push_trade") >= produced
    assert total(found, "infoway_bridge_frames_received_total", business="crypto", kind="error") >= 2
    assert total(found, "infoway_bridge_last_event_timestamp_seconds", business="crypto", stream="trade") > 1.7e9
    assert API_KEY not in text


def exposition_after_stop(running: RunningBridge) -> str:
    """The exposition the endpoint served, as the registry holds it once the stop flushed everything.

    Read after the stop so that every produced record has been acknowledged and observed, which
    is what makes "lag count = records produced" an exact check.
    """
    return generate_latest(running.bridge.metrics.registry).decode()


async def test_readyz_is_200_once_subscribed(kafka_bootstrap: str) -> None:
    """/readyz answers 200 and names the subscribed connections once the vendor acknowledged them."""
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=100)) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: running.bridge.readiness()[0], what="subscribed")
            port = running.bridge.metrics_port
            assert port is not None
            assert await asyncio.to_thread(scrape, port, "/readyz") == (200, "1 of 1 connections subscribed\n")


async def test_readyz_is_503_until_subscribed_and_metrics_never_carry_the_key(kafka_bootstrap: str) -> None:
    """/readyz answers 503 with the reason while no connection is subscribed; no exposition contains the key."""
    async with Simulator(
        SimulatorOptions(port=0, api_key=API_KEY, rate=100, rules=GatewayRules(refuse_handshake_status=503))
    ) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: running.bridge.metrics_port is not None, what="the metrics endpoint")
            port = running.bridge.metrics_port
            assert port is not None
            await eventually(lambda: sim.stats.handshakes_refused >= 2, what="refused handshakes")
            status, body = await asyncio.to_thread(scrape, port, "/readyz")
            assert (status, body) == (503, "no vendor connection subscribed (0 of 1)\n")
            assert (await asyncio.to_thread(scrape, port, "/nope"))[0] == 404
            _, text = await asyncio.to_thread(scrape, port)
    assert "infoway_bridge_vendor_errors_total" in text
    assert API_KEY not in text


def test_histogram_quantile_matches_promql() -> None:
    """The summary's quantile estimate interpolates within buckets as PromQL's histogram_quantile does."""
    metrics = BridgeMetrics(CollectorRegistry())
    for value in [0.002] * 50 + [0.02] * 40 + [2.0] * 10:
        metrics.event_lag.labels("crypto", "trade").observe(value)
    median, count = histogram_quantile(metrics.registry, "infoway_bridge_event_lag_seconds", 0.5, stream="trade")
    assert count == 100
    assert median is not None
    assert 0.001 <= median <= 0.0025
    p99, _ = histogram_quantile(metrics.registry, "infoway_bridge_event_lag_seconds", 0.99, stream="trade")
    assert p99 is not None
    assert 1.0 <= p99 <= 2.5
    assert histogram_quantile(metrics.registry, "infoway_bridge_event_lag_seconds", 0.5, stream="depth") == (None, 0.0)


def test_json_log_lines_carry_context_fields() -> None:
    """A JSON log line is one object with time, level, logger, message and the event's context fields."""
    record = logging.LogRecord("bridge.feed", logging.WARNING, __file__, 1, "ended: %s", ("vendor_513",), None)
    record.business, record.connection, record.code, record.retry_in_seconds = "crypto", "crypto-0#2", 513, 1.5
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["message"] == "ended: vendor_513"
    assert (line["business"], line["connection"], line["code"], line["retry_in_seconds"]) == (
        "crypto", "crypto-0#2", 513, 1.5,
    )  # fmt: skip
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


@pytest.mark.parametrize("name", [m for m in dir(BridgeMetrics(CollectorRegistry())) if not m.startswith("_")])
def test_no_metric_has_a_label_for_unbounded_values(name: str) -> None:
    """Labels are drawn from bounded sets: never a symbol, a raw message, a trace or the key."""
    metric = getattr(BridgeMetrics(CollectorRegistry()), name)
    labels = set(getattr(metric, "_labelnames", ()))
    assert not labels & {"symbol", "code_name", "message", "raw", "trace", "apikey", "key", "url"}


def test_interval_quantiles_come_from_bucket_differences() -> None:
    """The difference of two snapshots gives the quantile of only what was observed in between."""
    metrics = BridgeMetrics(CollectorRegistry())
    for _ in range(100):
        metrics.event_lag.labels("crypto", "trade").observe(5.0)
    before = histogram_buckets(metrics.registry, "infoway_bridge_event_lag_seconds", stream="trade")
    for _ in range(100):
        metrics.event_lag.labels("crypto", "trade").observe(0.003)
    after = histogram_buckets(metrics.registry, "infoway_bridge_event_lag_seconds", stream="trade")
    window = {bound: count - before.get(bound, 0.0) for bound, count in after.items()}
    p99, count = bucket_quantile(window, 0.99)
    assert count == 100
    assert p99 is not None
    assert 0.0025 <= p99 <= 0.005
    whole, _ = bucket_quantile(after, 0.99)
    assert whole is not None
    assert whole > 2.5
