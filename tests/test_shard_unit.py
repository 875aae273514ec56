"""A shard unit's start against a spool on disk: scanning the spool does not hold the event loop.

No broker: the unit's start fails at Kafka (a port nobody listens on) after the spool step, which is
the part under test. The scan is made slow by a sleep in the thread that runs it, as a large spool
is (every entry's CRC is checked).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bridge.app import topic_map
from bridge.errors import KafkaError
from bridge.metrics import BridgeMetrics
from bridge.serialize import RecordSerializer
from bridge.shard_unit import ShardUnit, unit_settings
from bridge.spool_lock import in_use
from bridge.spool_segments import Recovered
from tests.conftest import free_port
from tests.harness import bridge_config

SCAN_SECONDS = 0.5


def slow_unit(monkeypatch: pytest.MonkeyPatch, ticks: list[int]) -> tuple[ShardUnit, list[int]]:
    """A unit whose spool scan takes ``SCAN_SECONDS``; the second list gets the loop's ticks counted during the scan."""
    config = bridge_config(
        "ws://127.0.0.1:9/ws",
        f"127.0.0.1:{free_port()}",
        [{"business": "crypto", "codes": ["BTCUSDT"], "streams": ["trade"]}],
        kafka={"request_timeout_seconds": 0.5},
    )
    unit = ShardUnit(
        unit_settings(config, None, "test.unit"), config, RecordSerializer(topic_map(config)),
        BridgeMetrics(CollectorRegistry()), run="r",
    )  # fmt: skip
    scan = unit.spool.open
    during: list[int] = []

    def slow_scan() -> Recovered:
        before = len(ticks)
        time.sleep(SCAN_SECONDS)
        during.append(len(ticks) - before)
        return scan()

    monkeypatch.setattr(unit.spool, "open", slow_scan)
    return unit, during


async def ticking(ticks: list[int]) -> None:
    """Count 10 ms turns of the loop until cancelled."""
    while True:
        await asyncio.sleep(0.01)
        ticks.append(1)


async def test_the_loop_runs_on_while_a_unit_scans_its_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the spool is scanned, other tasks (/metrics, /healthz, other units' starts) keep their turns."""
    ticks: list[int] = []
    unit, during = slow_unit(monkeypatch, ticks)
    ticker = asyncio.create_task(ticking(ticks))
    try:
        with pytest.raises(KafkaError):
            await unit.start()
    finally:
        ticker.cancel()
        await unit.stop(timeout=1)
    # 50 turns fit in the scan; a scan in the loop's own thread would leave none.
    assert len(during) == 1
    assert during[0] >= 10, during


async def test_a_start_cancelled_during_the_scan_leaves_the_spool_to_the_units_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled mid-scan, the start ends once the scan has; the unit's stop then releases the spool's lock."""
    unit, during = slow_unit(monkeypatch, [])
    starting = asyncio.create_task(unit.start())
    await asyncio.sleep(SCAN_SECONDS / 5)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    directory = unit.settings.spool.dir
    assert directory is not None
    assert during, "the scan ran to its end"
    assert in_use(Path(directory)), "the scan took the spool's lock"
    await unit.stop(timeout=1)
    assert not in_use(Path(directory))
