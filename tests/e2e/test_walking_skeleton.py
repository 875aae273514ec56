"""End to end: simulator and bridge as real processes, a real broker, values decoded by Apache avro."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port
from tests.kafka_tools import apache_schema, consume, decode, read_sent_frames, wait_for_port

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"
API_KEY = "e2e-secret-key-123"
PUSHES = 400
SIDES = {0: "UNKNOWN", 1: "BUY", 2: "SELL"}


def spawn(arguments: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process with its stderr in ``log_path`` (the child keeps the file open, we do not)."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(arguments, stderr=log_file, env=env)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """A simulator process sending exactly PUSHES trades and recording each frame it sent."""
    port, record = free_port(), tmp_path / "sent.jsonl"
    process = spawn(
        [BRIDGE, "simulate", "--host", "127.0.0.1", "--port", str(port), "--rate", "400", "--api-key", API_KEY,
         "--max-pushes", str(PUSHES), "--record-sent", str(record), "--seed", "7"],
        tmp_path / "simulator.log",
    )  # fmt: skip
    yield port, record, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


async def test_trades_flow_from_the_simulator_to_kafka_exactly(
    tmp_path: Path, kafka_bootstrap: str, simulator: tuple[int, Path, subprocess.Popen[bytes]]
) -> None:
    """Every trade the simulator sent arrives once in Kafka, keyed by symbol, with exact decimals and times."""
    port, record_file, simulator_process = simulator
    await wait_for_port("127.0.0.1", port)
    topic = f"e2e.trades.{uuid.uuid4().hex[:8]}"
    codes = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
source:
  url: ws://127.0.0.1:{port}/ws
  api_key: ${{INFOWAY_API_KEY}}
  subscriptions:
    - business: crypto
      codes: [{", ".join(codes)}]
      streams: [trade]
kafka:
  bootstrap_servers: {kafka_bootstrap}
  topics: {{trade: {topic}, dead_letter: {topic}.dlq}}
metrics:
  port: {free_port()}
spool:
  dir: {tmp_path / "spool"}
""",
        encoding="utf-8",
    )
    log_path = tmp_path / "bridge.log"
    environment = {**os.environ, "INFOWAY_API_KEY": API_KEY}
    environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    bridge = spawn([BRIDGE, "run", "--config", str(config), "--summary-interval", "1"], log_path, environment)
    try:
        records = await consume(kafka_bootstrap, topic, PUSHES, timeout=90, give_up=lambda: bridge.poll() is not None)
    finally:
        bridge.send_signal(signal.SIGTERM)
        exit_code = bridge.wait(timeout=30)
    log_text = log_path.read_text(encoding="utf-8")
    assert exit_code == 0, log_text
    assert API_KEY not in log_text

    simulator_process.send_signal(signal.SIGTERM)
    simulator_process.wait(timeout=10)
    sent = [orjson.loads(entry["frame"])["data"] for entry in read_sent_frames(record_file)]
    assert len(sent) == PUSHES
    assert len(records) == PUSHES, f"expected {PUSHES} records, got {len(records)}\n{log_text}"

    schema = apache_schema("trade")
    decoded = [decode(schema, record.value) for record in records]
    assert [record.key for record in records] == [value["symbol"].encode() for value in decoded]
    assert {value["symbol"] for value in decoded} == set(codes)

    def from_kafka(value: dict[str, object]) -> tuple[object, ...]:
        return (value["symbol"], value["price"], value["size"], value["amount"], value["event_time"], value["side"])

    def from_vendor(data: dict[str, object]) -> tuple[object, ...]:
        event_time = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(str(data["t"])))
        return (
            data["s"], Decimal(str(data["p"])), Decimal(str(data["v"])), Decimal(str(data["vw"])), event_time,
            SIDES[int(str(data["td"]))],
        )  # fmt: skip

    assert Counter(map(from_kafka, decoded)) == Counter(map(from_vendor, sent))
    for value in decoded:
        assert value["business"] == "crypto"
        assert value["received_time"] >= value["event_time"] - timedelta(seconds=1)
    sequences = sorted(value["sequence"] for value in decoded)
    assert sequences == list(range(1, PUSHES + 1)), "one connection: sequence 1..N without holes"
