"""The feed's end of a connection: frames the vendor sent before its close are read, not cut off.

Against the simulator over a real socket, with an outlet that costs time per record so that
websockets' queue is full when the connection ends: the reader is behind, as it is under load.
No Kafka: the outlet collects records.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from bridge.protocol.events import DataOutcome, Record
from bridge.protocol.shards import plan_all
from bridge.records import TradeRecord
from bridge.shard_unit import build_feeds
from bridge.simulator import Simulator, SimulatorOptions
from tests.harness import API_KEY, bridge_config, eventually
from tests.kafka_tools import read_sent_frames
from tests.outlets import Collected

CODES = [f"D{i:02d}USDT" for i in range(10)]


class SlowOutlet(Collected):
    """Collects outcomes, spending ``cost`` seconds of CPU on each: a reader that falls behind the vendor."""

    def __init__(self, cost: float) -> None:
        super().__init__()
        self._cost = cost

    def emit(self, outcome: DataOutcome) -> None:
        """Keep it, after burning the cost (never awaits, as a real outlet)."""
        until = time.perf_counter() + self._cost
        while time.perf_counter() < until:
            pass
        super().emit(outcome)


def _trades(outlet: Collected) -> list[tuple[str, int]]:
    return [
        (o.record.symbol, int(o.record.event_time.timestamp() * 1000))
        for o in outlet.outcomes
        if isinstance(o, Record) and isinstance(o.record, TradeRecord)
    ]


def _sent(path: Path) -> list[tuple[str, int]]:
    trades = []
    for line in read_sent_frames(path):
        frame = orjson.loads(line["frame"])
        if frame.get("code") == 10002:
            trades.append((frame["data"]["s"], int(frame["data"]["t"])))
    return trades


async def _settled(outlet: Collected) -> None:
    """Wait until the outlet has received nothing new for half a second (10 s at most)."""
    deadline = time.monotonic() + 10
    seen = -1
    while len(outlet.outcomes) != seen and time.monotonic() < deadline:
        seen = len(outlet.outcomes)
        await asyncio.sleep(0.5)


async def _run_until(tmp_path: Path, end: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Run one feed against a simulator at 4,000 trades/s behind a slow outlet, end it by ``end``; return sent, read."""
    record = tmp_path / "sent.jsonl"
    # A 30 s close_timeout: the simulator waits for the slow reader to reach its close frame.
    options = SimulatorOptions(
        port=0, api_key=API_KEY, rate=4000, depth_rate=0, kline_rate=0, record_sent=record, close_timeout=30
    )
    outlet = SlowOutlet(cost=0.0004)  # at most 2,500 records/s: the vendor's 4,000/s queue up in the socket
    stop = asyncio.Event()
    async with Simulator(options) as sim:
        # Heartbeats every 10 ms: the writer touches the socket all the time, so it meets the close early.
        source = {"heartbeat_interval_seconds": 0.01, "frame_limit": 1000, "frame_window_seconds": 1}
        config = bridge_config(sim.url, "127.0.0.1:9", [{"business": "crypto", "codes": CODES}], source=source)
        plans = plan_all(config.source.subscriptions, max_codes_per_connection=config.source.max_codes_per_connection)
        (feed,) = build_feeds(config, plans, outlet, BridgeMetrics(CollectorRegistry()), run="drain")
        task = asyncio.create_task(feed.run(stop))
        await eventually(lambda: len(_trades(outlet)) > 1000, timeout=20)
        if end == "bridge stops":
            stop.set()
            await asyncio.wait_for(task, 10)
    if end == "vendor closes":
        # The simulator has stopped (its close frame sent); the feed reads what came before it, then retries.
        await _settled(outlet)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sim.stats.cut_at_stop == 0
    return _sent(record), _trades(outlet)


async def test_a_stop_reads_every_frame_the_vendor_sent_before_it_saw_the_close(tmp_path: Path) -> None:
    """The bridge stopping closes the socket and reads on until the vendor's close: nothing it sent is lost."""
    sent, read = await _run_until(tmp_path, "bridge stops")
    assert len(sent) > 1000
    assert read == sent, f"{len(sent) - len(read)} of {len(sent)} sent trades were not read"


async def test_the_vendor_closing_behind_a_busy_reader_loses_nothing(tmp_path: Path) -> None:
    """The vendor's close (1001) while the reader is behind: the queued frames are read before the connection ends."""
    sent, read = await _run_until(tmp_path, "vendor closes")
    assert len(sent) > 1000
    assert read == sent, f"{len(sent) - len(read)} of {len(sent)} sent trades were not read"
