"""What the chaos tests share: the bridge as a real process, its metrics, and the exactly-once oracle.

The oracle is the simulator's ``record_sent`` file: every trade it wrote to a socket, in order.
Event times strictly increase per symbol there, so ``(symbol, t)`` names a push; what Kafka holds
(read with ``isolation.level=read_committed``) is compared with it symbol by symbol.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastavro
import orjson

from bridge.records import EPOCH
from bridge.simulator import SimulatorOptions
from tests.conftest import free_port
from tests.kafka_tools import SCHEMAS, consume_all, read_sent_frames

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"
API_KEY = "chaos-secret-key-5521"
_TRADE_SCHEMA = fastavro.parse_schema(json.loads((SCHEMAS / "trade.avsc").read_text(encoding="utf-8")))


STOP_GRACE_SECONDS = 30.0
"""The simulators' ``close_timeout`` in these tests. A bridge busy draining its spool can be seconds behind
its socket when the simulator stops; cut after the default 2 s, it would lose what was still on its way,
which the record file lists as sent (``SimulatorStats.cut_at_stop`` counts such cuts)."""


def recording(tmp_path: Path, rate: float, **options: Any) -> SimulatorOptions:
    """The vendor at ``rate`` trades a second and no other stream, recording what it sends in ``sent.jsonl``."""
    return SimulatorOptions(
        port=0, api_key=API_KEY, rate=rate, depth_rate=0, kline_rate=0, record_sent=tmp_path / "sent.jsonl",
        close_timeout=STOP_GRACE_SECONDS, **options,
    )  # fmt: skip


def sent_trades(record_file: Path) -> dict[str, list[int]]:
    """Per symbol, the event times (ms) of every trade the simulator sent, in the order sent."""
    sent: dict[str, list[int]] = {}
    for line in read_sent_frames(record_file):
        if "garbage" in line:
            continue
        frame = orjson.loads(line["frame"])
        if frame.get("code") == 10002:
            sent.setdefault(frame["data"]["s"], []).append(int(frame["data"]["t"]))
    return sent


async def trades_in_kafka(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """Per symbol, the event times (ms) of every committed trade on ``topic``, in partition order."""
    records = await consume_all(bootstrap, topic)
    found: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = fastavro.schemaless_reader(io.BytesIO(record.value), _TRADE_SCHEMA)
        assert isinstance(value, dict)
        millis = (value["event_time"] - EPOCH) // timedelta(milliseconds=1)
        found.setdefault(value["symbol"], []).append(millis)
    return found


@dataclass(frozen=True)
class Comparison:
    """How Kafka's trades of one run compare with what was sent."""

    sent: int
    delivered: int
    duplicates: int
    out_of_order: int
    missing: int
    missing_runs: int
    """Stretches of consecutive sent trades that are missing (per symbol, summed)."""
    stretches: tuple[str, ...] = ()
    """The first dozen stretches (``symbol #first-#last of n``, the first one's time, how far from the end)."""


def compare(sent: dict[str, list[int]], delivered: dict[str, list[int]]) -> Comparison:
    """Count duplicates, reorderings and missing trades, and in how many stretches the missing ones lie."""
    duplicates = out_of_order = missing = 0
    stretches: list[str] = []
    for symbol, times in sent.items():
        got = delivered.get(symbol, [])
        duplicates += len(got) - len(set(got))
        out_of_order += sum(1 for a, b in itertools.pairwise(got) if b <= a)
        present = set(got)
        first: int | None = None
        for index, t in enumerate([*times, None]):
            if t is not None and t not in present:
                missing += 1
                first = index if first is None else first
            elif first is not None:
                last = index - 1
                where = f"t={times[first]}, {len(times) - 1 - last} before the end"
                stretches.append(f"{symbol} #{first}-#{last} of {len(times)} ({where})")
                first = None
    extra = sum(len(set(got) - set(sent.get(symbol, []))) for symbol, got in delivered.items())
    assert extra == 0, f"{extra} trades in Kafka that the simulator never sent"
    total_sent = sum(len(times) for times in sent.values())
    total_delivered = sum(len(times) for times in delivered.values())
    return Comparison(
        total_sent, total_delivered, duplicates, out_of_order, missing, len(stretches), tuple(stretches[:12])
    )


def missing_times(sent: dict[str, list[int]], delivered: dict[str, list[int]]) -> dict[str, list[int]]:
    """Per symbol, the event times (ms) sent but not in Kafka."""
    return {symbol: [t for t in times if t not in set(delivered.get(symbol, []))] for symbol, times in sent.items()}


class BridgeProcess:
    """``infoway-bridge run`` as a child process, with its config, log, metrics endpoint and peak memory."""

    def __init__(
        self,
        directory: Path,
        simulator_url: str,
        bootstrap: str,
        topics: dict[str, str],
        *,
        arguments: tuple[str, ...] = (),
        **sections: dict[str, Any],
    ) -> None:
        self.directory = directory
        self._arguments = arguments
        self.metrics_port = free_port()
        self.log_path = directory / "bridge.log"
        self.runs = 0
        self.peak_rss_kib = 0
        document: dict[str, dict[str, Any]] = {
            "source": {
                "url": simulator_url,
                "api_key": "${INFOWAY_API_KEY}",
                "subscriptions": [{"business": "crypto", "codes": [f"C{i:02d}USDT" for i in range(10)]}],
                "reconnect": {"initial_delay_seconds": 0.05, "max_delay_seconds": 0.5},
                "heartbeat_interval_seconds": 5,
            },
            "kafka": {"bootstrap_servers": bootstrap, "topics": topics, "request_timeout_seconds": 5,
                      "delivery_timeout_seconds": 5, "flush_timeout_seconds": 5},
            "metrics": {"host": "127.0.0.1", "port": self.metrics_port},
            "spool": {"dir": str(directory / "spool")},
            "delivery": {"transactional_id": f"chaos.{directory.name}"},
        }  # fmt: skip
        for name, overrides in sections.items():
            document[name] = {**document.get(name, {}), **overrides}
        self.config_path = directory / "bridge.yaml"
        self.config_path.write_text(json.dumps(document), encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running child."""
        assert self._process is not None, "start() it first"
        return self._process

    def start(self) -> None:
        """Start a run, its log appended to ``bridge.log`` (see :meth:`started`)."""
        environment = {**os.environ, "INFOWAY_API_KEY": API_KEY}
        environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        # make test sets asyncio's debug mode for the in-process tests; at thousands of records a
        # second its per-callback bookkeeping would make the child the bottleneck being measured.
        environment.pop("PYTHONASYNCIODEBUG", None)
        self.runs += 1
        with self.log_path.open("ab") as log_file:
            log_file.write(f"---- run {self.runs}\n".encode())
            log_file.flush()
            self._process = subprocess.Popen(
                [BRIDGE, "run", "--config", str(self.config_path), "--summary-interval", "5", *self._arguments],
                stderr=log_file, env=environment,
            )  # fmt: skip

    def log(self) -> str:
        """Everything the runs logged."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def sample_memory(self) -> None:
        """Note the child's peak resident memory (VmHWM) so far."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))

    def metric(self, name: str, **labels: str) -> float:
        """A sample from the child's /metrics (summed over label sets that include ``labels``; 0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def wait_for(self, name: str, at_least: float, timeout: float = 60, **labels: str) -> float:
        """Wait until a metric reaches ``at_least``, sampling memory meanwhile; fails the test after ``timeout``."""
        return await self._wait(name, lambda value: value >= at_least, f">= {at_least}", timeout, labels)

    async def wait_down_to(self, name: str, at_most: float, timeout: float = 60, **labels: str) -> float:
        """Wait until a metric falls to ``at_most`` (a spool draining), as :meth:`wait_for` does."""
        return await self._wait(name, lambda value: value <= at_most, f"<= {at_most}", timeout, labels)

    async def _wait(
        self, name: str, reached: Callable[[float], bool], wanted: str, timeout: float, labels: dict[str, str]
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            self.sample_memory()
            value = await asyncio.to_thread(self.metric, name, **labels)
            if reached(value):
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"the bridge exited ({self.process.returncode}) waiting for {name}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed at {value}, not {wanted}, for {timeout:g}s:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.2)

    async def started(self, timeout: float = 60) -> None:
        """Wait until this run has resumed its spool and produces (its "producing to Kafka" line)."""
        deadline = time.monotonic() + timeout
        while "producing to Kafka at" not in self.log().rsplit(f"---- run {self.runs}", 1)[-1]:
            if self.process.poll() is not None:
                raise AssertionError(f"the bridge exited ({self.process.returncode}) while starting:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the bridge did not start within {timeout:g}s:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.1)

    async def idle_for(self, seconds: float) -> None:
        """Let the child run for ``seconds``, sampling its memory."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sample_memory()
            await asyncio.sleep(0.5)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit status."""
        self.sample_memory()
        self.process.send_signal(sig)
        return await asyncio.to_thread(self.process.wait, timeout)

    def kill_if_running(self) -> None:
        """Clean-up: no child outlives its test."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
