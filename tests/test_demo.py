"""`make demo` on a busy machine: scripts/demo run briefly with the usual Kafka and metrics ports taken."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

USUAL_PORTS = (19092, 9092, 9464)
"""The old demo broker port, Kafka's default and the bridge's default metrics port."""


@contextlib.contextmanager
def listeners_on(ports: tuple[int, ...]) -> Iterator[None]:
    """Hold each port with a listener of our own; a port something else already holds is busy either way."""
    with contextlib.ExitStack() as held:
        for port in ports:
            listener = held.enter_context(socket.socket())
            try:
                listener.bind(("127.0.0.1", port))
            except OSError:
                continue
            listener.listen()
        yield


def test_the_demo_runs_with_the_usual_ports_taken_and_leaves_nothing_behind() -> None:
    """With 19092, 9092 and 9464 held by other listeners, the demo picks free ports, names them, moves data
    end to end without a warning, and its broker's data folder is gone afterwards."""
    with listeners_on(USUAL_PORTS):
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "demo"), "--seconds", "3"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    broker = re.search(
        r"starting a local Kafka broker on 127\.0\.0\.1:(\d+) \(controller on 127\.0\.0\.1:(\d+)\)", result.stdout
    )
    simulator = re.search(r"simulator serving the vendor protocol on ws://127\.0\.0\.1:(\d+)/ws", result.stdout)
    metrics = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", result.stdout)
    assert broker is not None, result.stdout
    assert simulator is not None, result.stdout
    assert metrics is not None, result.stdout
    chosen = {int(port) for port in (*broker.groups(), *simulator.groups(), *metrics.groups())}
    assert len(chosen) == 4, f"four different ports: {chosen}"
    assert not chosen & set(USUAL_PORTS)
    trades = re.search(r"infoway\.trades: (\d+) records in Kafka", result.stdout)
    assert trades is not None, result.stdout
    assert int(trades.group(1)) > 0
    assert re.search(r" (WARNING|ERROR) ", result.stderr) is None, result.stderr
    assert not (Path(tempfile.gettempdir()) / f"infoway-kafka-local-{broker.group(1)}").exists(), "stopped with --purge"
