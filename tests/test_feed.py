"""The feed over real sockets: the simulator as the vendor, a real broker behind the bridge."""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.feed import vendor_url
from bridge.redact import redact
from bridge.simulator import GatewayRules, Simulator, SimulatorOptions
from bridge.timing import RetryPolicy
from tests.conftest import free_port
from tests.harness import API_KEY, RunningBridge, bridge_config, eventually, topics
from tests.kafka_tools import apache_schema, consume, decode

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"


def counter(bridge: RunningBridge, name: str, **labels: str) -> float:
    """A metric's current value from the bridge's own registry (0 when never observed)."""
    value = bridge.bridge.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_retry_policy_is_full_jitter_under_an_exponential_cap() -> None:
    """Delays are drawn from [0, min(cap, initial * 2**attempt)]: spread, growing, capped."""
    policy = RetryPolicy(initial=1.0, maximum=30.0, rng=random.Random(1))
    for attempt, bound in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 30.0), (40, 30.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= bound for delay in delays)
        assert max(delays) > bound * 0.8, "full jitter reaches near the bound"
        assert min(delays) < bound * 0.2, "and near zero"


def test_vendor_url_carries_the_key_and_redacts() -> None:
    """The connection URL holds the key in the query string, and redact() masks it."""
    url = vendor_url("wss://data.infoway.io/ws", "stock", "s3cr3t")
    assert url == "wss://data.infoway.io/ws?business=stock&apikey=s3cr3t"
    assert redact(url) == "wss://data.infoway.io/ws?business=stock&apikey=***"


async def test_1500_codes_open_three_connections(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """1,500 codes on one business become three vendor connections of at most 600 codes, all subscribed."""
    caplog.set_level(logging.DEBUG)
    codes = [f"S{i:04d}USDT" for i in range(1500)]
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=300)) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": codes}])
        async with RunningBridge(config) as running:
            await eventually(lambda: sim.stats.connections == 3, what="three connections")
            await eventually(lambda: running.bridge.readiness()[0], what="readiness")
            assert sorted(len(client.codes) for client in sim.clients) == [300, 600, 600]
            assert running.bridge.readiness() == (True, "3 of 3 connections subscribed")
            assert counter(running, "infoway_bridge_subscribed_codes", business="crypto", stream="trade") == 1500
            assert counter(running, "infoway_bridge_connection_up", business="crypto", connection="crypto-2") == 1
        assert counter(running, "infoway_bridge_subscribed_codes", business="crypto", stream="trade") == 0
    assert API_KEY not in caplog.text


async def test_stale_feed_reconnects_and_reports_a_gap(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """A feed silent for stale_after is replaced, and the silence is reported as a gap from the last push."""
    caplog.set_level(logging.INFO)
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=200, max_pushes=20)) as sim:
        gap_topic = f"gaps.{uuid.uuid4().hex[:8]}"
        config = bridge_config(
            sim.url,
            kafka_bootstrap,
            [{"business": "crypto", "codes": ["BTCUSDT"], "stale_after_seconds": 0.5}],
            kafka={"topics": {**topics(), "gap": gap_topic}},
        )
        async with RunningBridge(config) as running:
            await eventually(
                lambda: (
                    counter(running, "infoway_bridge_reconnects_total", business="crypto", reason="stale", code="") >= 1
                ),
                what="a stale reconnect",
            )
            await eventually(lambda: sim.stats.connections_total >= 2, what="a second connection")
            records = await consume(kafka_bootstrap, gap_topic, 1, timeout=30)
    gap = decode(apache_schema("gap"), records[0].value)
    assert records[0].key == b"crypto-0"
    assert (gap["business"], gap["connection"], gap["codes"], gap["streams"]) == (
        "crypto",
        "crypto-0",
        ["BTCUSDT"],
        ["trade"],
    )
    assert (gap["cause"], gap["resolved"]) == ("stale", True)
    run = running.bridge.run_id
    assert (gap["previous_connection_id"], gap["next_connection_id"]) == (f"crypto-0#1@{run}", f"crypto-0#2@{run}")
    assert timedelta(seconds=0.4) < gap["end"] - gap["start"] < timedelta(seconds=10)
    assert counter(running, "infoway_bridge_gap_seconds_total", business="crypto") > 0.4
    assert "no push for" in caplog.text
    assert "reconnecting (on_stale: reconnect)" in caplog.text
    assert "cause stale" in caplog.text
    assert API_KEY not in caplog.text


async def test_stale_feed_report_only(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """With on_stale: report the silence is logged once and the connection is kept."""
    caplog.set_level(logging.INFO)
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=200, max_pushes=5)) as sim:
        entry = {"business": "crypto", "codes": ["BTCUSDT"], "stale_after_seconds": 0.3, "on_stale": "report"}
        config = bridge_config(sim.url, kafka_bootstrap, [entry])
        async with RunningBridge(config):
            await eventually(lambda: "reporting only (on_stale: report)" in caplog.text, what="the stale report")
            await eventually(lambda: sim.stats.trades_sent == 5, what="five trades")
            assert sim.stats.connections_total == 1
    assert caplog.text.count("no push for") == 1


def test_refused_key_stops_the_process(tmp_path: Path, kafka_bootstrap: str) -> None:
    """A 401 at the handshake stops the bridge with status 4, naming each business and the cause, never the key."""
    port = free_port()
    with (tmp_path / "sim.log").open("wb") as sim_log:
        simulator = subprocess.Popen(
            [BRIDGE, "simulate", "--port", str(port), "--api-key", "the-right-key"], stderr=sim_log
        )
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
source:
  url: ws://127.0.0.1:{port}/ws
  subscriptions: [{{business: crypto, codes: [BTCUSDT]}}, {{business: stock, codes: [AAPL.US]}}]
kafka: {{bootstrap_servers: "{kafka_bootstrap}"}}
metrics: {{port: 0}}
spool: {{dir: "{tmp_path / "spool"}"}}
""",
        encoding="utf-8",
    )
    wrong_key = "wrong-key-must-not-leak-7781"
    env = {**os.environ, "INFOWAY_API_KEY": wrong_key}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    try:
        wait_for_tcp(port)
        result = subprocess.run(
            [BRIDGE, "run", "--config", str(config), "--log-level", "DEBUG"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    output = result.stderr + result.stdout
    assert result.returncode == 4, output
    for connection in ("crypto-0#1@", "stock-0#1@"):
        line = next(line for line in output.splitlines() if f"connection {connection}" in line and "for good" in line)
        assert "stopped for good: HTTP 401 (unauthorized): the API key was refused; not retrying" in line
    assert "no vendor connection is left" in output
    assert "reconnecting" not in output, "a refused key is never retried"
    assert wrong_key not in output


def wait_for_tcp(port: int, timeout: float = 20.0) -> None:
    """Block until 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


def test_redaction_masks_the_query_key_and_long_literal_secrets() -> None:
    """apikey=... is masked at any length; literal secrets are masked when long enough to be keys."""
    assert redact("GET /ws?business=crypto&apikey=k HTTP/1.1") == "GET /ws?business=crypto&apikey=*** HTTP/1.1"
    assert redact("failed for key abcdef123 at host", ["abcdef123"]) == "failed for key *** at host"
    assert redact("check kafka.bootstrap_servers", ["k"]) == "check kafka.bootstrap_servers"


async def test_terminal_refusal_is_counted_and_ends_the_run(kafka_bootstrap: str) -> None:
    """A 401 handshake counts one terminal error and the bridge ends with status 4, no retry."""
    async with Simulator(
        SimulatorOptions(port=0, api_key=API_KEY, rules=GatewayRules(refuse_handshake_status=401))
    ) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        async with RunningBridge(config) as running:
            assert await running.exit_code() == 4
            assert counter(running, "infoway_bridge_terminal_errors_total", business="crypto", code="401") == 1
            assert counter(running, "infoway_bridge_vendor_errors_total", business="crypto", code="401") == 1
    assert sim.stats.handshakes_refused == 1


async def test_two_runs_never_share_a_connection_id(kafka_bootstrap: str) -> None:
    """Two bridge runs against one simulator write records whose (connection_id, sequence) never collide."""
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=200)) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        for _ in range(2):
            async with RunningBridge(config) as running:
                await eventually(lambda: running.delivered >= 20, what="20 records")
        records = await consume(kafka_bootstrap, config.kafka.topics.trade, 40, timeout=30)
    values = [decode(apache_schema("trade"), record.value) for record in records]
    pairs = [(value["connection_id"], value["sequence"]) for value in values]
    assert len(pairs) >= 40
    assert len(set(pairs)) == len(pairs)
    runs = {connection_id.split("@", 1)[1] for connection_id, _ in pairs}
    assert len(runs) == 2
    assert sum(value["sequence"] == 1 for value in values) == 2
