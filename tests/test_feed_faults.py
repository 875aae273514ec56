"""The feed against the simulator's fault modes: resets, 513, 501, 429, 505 and forced reconnects.

Every test runs the real bridge in-process with a real broker behind it, captures all log lines
at DEBUG and checks that the API key appears in none of them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.simulator import GatewayRules, Simulator, SimulatorOptions
from tests.harness import API_KEY, RunningBridge, bridge_config, eventually
from tests.kafka_tools import apache_schema, consume, decode, read_sent_frames


@pytest.fixture(autouse=True)
def no_key_in_any_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture every log line at DEBUG; after the test, the key must be in none of them."""
    caplog.set_level(logging.DEBUG)
    yield
    assert API_KEY not in caplog.text


def metric(running: RunningBridge, name: str, **labels: str) -> float:
    """A metric's value from the running bridge's registry (0 when never observed)."""
    value = running.bridge.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def reconnects(running: RunningBridge, reason: str, code: str = "") -> float:
    """Reconnects of the crypto connections for one cause (and vendor code or HTTP status)."""
    return metric(running, "infoway_bridge_reconnects_total", business="crypto", reason=reason, code=code)


def options(**overrides: Any) -> SimulatorOptions:
    """Simulator options for these tests: a free port, our key, a moderate rate."""
    return SimulatorOptions(**{"port": 0, "api_key": API_KEY, "rate": 400.0, **overrides})


async def test_abrupt_close_reconnects_resubscribes_and_loses_nothing_after(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """After resets every 150 pushes, each push sent reaches Kafka once, per-connection sequences intact."""
    sent_file = tmp_path / "sent.jsonl"
    async with Simulator(
        options(max_pushes=600, record_sent=sent_file, rules=GatewayRules(close_after_pushes=150))
    ) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: sim.stats.trades_sent == 600, timeout=30, what="600 trades sent")
            records = await consume(kafka_bootstrap, config.kafka.topics.trade, 600, timeout=30)
            closed = reconnects(running, "closed")
    sent = [orjson.loads(line["frame"])["data"] for line in read_sent_frames(sent_file)]
    values = [decode(apache_schema("trade"), record.value) for record in records]
    assert len(values) == len(sent) == 600
    as_sent = Counter(
        (d["s"], Decimal(d["p"]), datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=d["t"])) for d in sent
    )
    assert Counter((v["symbol"], v["price"], v["event_time"]) for v in values) == as_sent
    by_connection: dict[str, list[int]] = {}
    for value in values:
        by_connection.setdefault(value["connection_id"], []).append(value["sequence"])
    assert len(by_connection) >= 4, by_connection.keys()
    assert closed >= 3
    for connection, sequences in by_connection.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), connection


async def test_heartbeat_timeout_513_reconnects(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """Without heartbeats in time the vendor sends 513 and closes; the bridge counts it and reconnects."""
    async with Simulator(options(rules=GatewayRules(heartbeat_timeout=0.4))) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}],
            source={"heartbeat_interval_seconds": 30},
        )  # fmt: skip
        async with RunningBridge(config) as running:
            await eventually(lambda: sim.stats.heartbeat_timeouts >= 2, what="two 513s")
            await eventually(
                lambda: (
                    metric(
                        running, "infoway_bridge_reconnects_total", business="crypto", reason="vendor_error", code="513"
                    )
                    >= 2
                ),
                what="two reconnects for 513",
            )
            assert metric(running, "infoway_bridge_vendor_errors_total", business="crypto", code="513") >= 2
    assert "vendor error 513 (heartbeat_timeout)" in caplog.text


async def test_heartbeats_in_time_prevent_513(kafka_bootstrap: str) -> None:
    """Heartbeats more often than the vendor's timeout keep the connection: no 513, one connection."""
    async with Simulator(options(rules=GatewayRules(heartbeat_timeout=0.5))) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}],
            source={"heartbeat_interval_seconds": 0.15},
        )  # fmt: skip
        async with RunningBridge(config):
            await eventually(lambda: sim.stats.trades_sent > 400, what="a second and more of trades")
    assert (sim.stats.heartbeat_timeouts, sim.stats.connections_total) == (0, 1)


async def test_501_backs_off_and_recovers(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """A 501 answer to the first subscribe is counted, the bridge reconnects after a backoff and data flows."""
    async with Simulator(options(rules=GatewayRules(fail_subscribe_nth=1))) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: running.bridge.readiness()[0], what="subscribed after the 501")
            assert metric(running, "infoway_bridge_vendor_errors_total", business="crypto", code="501") == 1
            assert (
                metric(running, "infoway_bridge_reconnects_total", business="crypto", reason="vendor_error", code="501")
                == 1
            )
            assert sim.stats.connections_total == 2
    assert "vendor error 501 (frequency_limit_minute)" in caplog.text
    assert "reconnecting in" in caplog.text


async def test_429_handshakes_back_off_then_connect(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """Three 429 handshakes are counted by status and retried with backoff; the fourth connects."""
    async with Simulator(options(rules=GatewayRules(refuse_handshake_status=429, refuse_handshakes=3))) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: running.bridge.readiness()[0], what="subscribed after three 429s")
            assert metric(running, "infoway_bridge_vendor_errors_total", business="crypto", code="429") == 3
            assert (
                metric(running, "infoway_bridge_reconnects_total", business="crypto", reason="http_refused", code="429")
                == 3
            )
    assert sim.stats.handshakes_refused == 3
    assert caplog.text.count(": HTTP 429 (quota): request rate over the plan's quota; retrying in") == 3


async def test_subscribe_fail_505_is_reported_not_resent(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 'Subscribe fail:' 505 is reported with its trace and the same subscription is not sent again."""
    async with Simulator(options(rules=GatewayRules(subscribe_fail_505_nth=1))) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"], "streams": ["trade", "depth"]}]
        )
        async with RunningBridge(config) as running:
            await eventually(
                lambda: metric(running, "infoway_bridge_vendor_errors_total", business="crypto", code="505") == 1,
                what="the 505",
            )
            await eventually(lambda: sim.stats.depth_sent > 50, what="depth flowing on the same connection")
            assert sim.stats.trades_sent == 0
            assert sim.stats.connections_total == 1
    assert "vendor error 505 (connection_code_limit)" in caplog.text
    assert "check the subscription configuration" in caplog.text


async def test_twenty_forced_reconnects_never_exceed_the_frame_budget(kafka_bootstrap: str) -> None:
    """Across 20 forced reconnects the gateway never sees more than 60 frames a minute from the key."""
    async with Simulator(options(rate=300, rules=GatewayRules(close_after_pushes=5))) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"]}],
            source={"heartbeat_interval_seconds": 1},
        )  # fmt: skip
        async with RunningBridge(config):
            await eventually(lambda: sim.stats.connections_total >= 21, timeout=60, what="20 reconnects")
    assert sim.stats.budget_violations == 0
    assert 20 <= sim.stats.max_frames_in_window_per_key <= 60
