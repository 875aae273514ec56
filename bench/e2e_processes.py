"""The processes of the end-to-end benchmark (bench/bench_e2e.py): loads, the broker, the simulator, /proc."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.workers import free_ports

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
KAFKA_VERSION = "4.1.1"
"""The broker of our own (``scripts/kafka-local --version``); the ceiling's ProducerPerformance runs from its jars."""


@dataclass(frozen=True)
class Load:
    """One offered load: pushes per second of each stream over ``codes`` crypto codes."""

    name: str
    trades: int
    depth: int = 0
    klines: int = 0

    @property
    def total(self) -> int:
        """Pushes offered per second, all streams."""
        return self.trades + self.depth + self.klines


def parse_loads(text: str) -> list[Load]:
    """``5000,10000,mix:10000/2000/500`` as loads (a mix is trades/depth/klines)."""
    loads = []
    for item in text.split(","):
        if item.startswith("mix:"):
            trades, depth, klines = (int(part) for part in item[4:].split("/"))
            loads.append(Load(f"mix {trades}/{depth}/{klines}", trades, depth, klines))
        else:
            loads.append(Load(f"{int(item)} trades", int(item)))
    return loads


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for several at once, ``free_ports``)."""
    return free_ports(1)[0]


def _tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (``run --workers`` forks its workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants, from /proc (Linux)."""
    total = 0.0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mb(pid: int) -> float:
    """The peak resident set (VmHWM) of a process plus its live descendants', in MB."""
    total = 0.0
    for member in _tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), 0.0)
    return total


@dataclass
class Broker:
    """The broker the contenders write to, and its JVM's pid when it is ours."""

    bootstrap: str
    pid: int | None

    @property
    def described(self) -> str:
        """For the conditions line: which broker."""
        return f"Kafka {KAFKA_VERSION}, one KRaft broker of our own" if self.pid is not None else self.bootstrap


@contextmanager
def broker(configured: str | None) -> Iterator[Broker]:
    """The broker at ``configured``, else a broker of our own on free ports, purged at the end."""
    if configured:
        yield Broker(configured, None)
        return
    port, controller = free_ports(2)
    script = ROOT / "scripts" / "kafka-local"
    subprocess.run(
        [sys.executable, script, "start", "--port", str(port), "--controller-port", str(controller),
         "--version", KAFKA_VERSION],
        check=True,
    )  # fmt: skip
    pid_file = Path(tempfile.gettempdir()) / f"infoway-kafka-local-{port}" / "kafka.pid"
    try:
        yield Broker(f"127.0.0.1:{port}", int(pid_file.read_text().strip()))
    finally:
        subprocess.run([sys.executable, script, "stop", "--port", str(port), "--purge"], check=False)


@contextmanager
def simulator(load: Load, pushes_for: float) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The simulator offering ``load``, stopping each stream after ``pushes_for`` seconds' worth; and its port."""
    port = free_port()
    command = [
        sys.executable, "-m", "bridge.simulator", "--host=127.0.0.1", f"--port={port}", f"--api-key={KEY}",
        f"--rate={load.trades}", f"--depth-rate={load.depth}", f"--kline-rate={load.klines}",
        f"--max-pushes={int(load.trades * pushes_for)}", f"--max-depth-pushes={int(load.depth * pushes_for)}",
        f"--max-kline-pushes={int(load.klines * pushes_for)}", "--frame-limit=0",
        "--max-codes-per-connection=0", "--summary-every=0", "--seed=1",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), 20, "the simulator did not start")
        yield process, port
    finally:
        stop(process)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def sim_stats(port: int) -> dict[str, Any]:
    """The simulator's ``/sim/stats`` totals."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/stats", timeout=60) as answer:
        document: dict[str, Any] = json.load(answer)
    totals: dict[str, Any] = document["totals"]
    return totals


def pushes_sent(port: int) -> int:
    """Pushes the simulator has sent, all streams."""
    return sum(sim_stats(port)["pushes_sent"].values())


def wait_until(condition: Any, timeout: float, failure: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; raise ``RuntimeError(failure)`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
