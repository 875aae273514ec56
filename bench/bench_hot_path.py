#!/usr/bin/env python3
"""The bridge's own CPU per trade, socket to acknowledgement bookkeeping, against the tree at a baseline commit.

In one process per tree, in interleaved rounds: the real ``FeedConnection._read`` fed by a socket
stand-in that yields ready-made trade frames (the simulator's), so every frame goes through the
session (classify, normalise, provenance), the publisher (serialise), the disk spool (entries,
segment files, fsync every 1,000 records or 50 ms); a drain task reads the spool as the sink does,
groups the records by partition and does the sink's bookkeeping after an acknowledgement
(``observe_acknowledged``, ``acknowledge``). Only Kafka is left out: its client's share is in
bench/bench_e2e.py. The result is CPU µs per trade (utime + stime of the process over the run).

``--codes`` varies the symbols (10 and 10,000: the cost per record should not depend on it).
``--baseline`` is a commit of this repository (default: the one before issue 14's hot-path work),
extracted with ``git archive`` and run the same way; ``none`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "708a7e1"
"""The last commit before the hot-path changes of issue 14."""


class _Socket:
    """Yields the frames, then ends, as a closed connection does; yields to the loop every ``chunk`` frames."""

    def __init__(self, frames: list[str], chunk: int) -> None:
        self._frames = frames
        self._chunk = chunk

    async def _iterate(self) -> AsyncIterator[str]:
        for index, frame in enumerate(self._frames):
            if index % self._chunk == 0:
                await asyncio.sleep(0)
            yield frame

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()


async def measure(codes: int, count: int) -> dict[str, float]:
    """CPU µs per trade through the tree on ``sys.path`` (see the module docstring)."""
    from prometheus_client import CollectorRegistry

    from bridge.config_spool import SpoolConfig
    from bridge.feed import FeedConnection
    from bridge.metrics import BridgeMetrics, counter_totals
    from bridge.pipeline import Publisher
    from bridge.protocol import ConnectionSession, plan_connections
    from bridge.records import Stream
    from bridge.serialize import RecordSerializer, TopicMap
    from bridge.simulator.market import Market
    from bridge.spool import Spool

    names = [f"C{index:05d}USDT" for index in range(codes)]
    (plan,) = plan_connections("crypto", names, [Stream.TRADE], max_codes_per_connection=codes)
    session = ConnectionSession(plan, run_id="20261202T120000Z-000000")
    session.begin_attempt()
    session.connection_opened(0.0)
    market = Market("crypto", seed=3)
    start = int(time.time() * 1000)
    frames = [market.trade_frame(names[index % codes], start + index // 20).decode() for index in range(count)]
    metrics = BridgeMetrics(CollectorRegistry())
    with tempfile.TemporaryDirectory(prefix="bench-hot-") as directory:
        spool = Spool(SpoolConfig(dir=Path(directory), max_bytes=4 << 30), metrics)
        spool.open()
        spool.resume(0)
        topics = TopicMap({Stream.TRADE: "trades"}, "dlq")
        publisher = Publisher(RecordSerializer(topics), spool, metrics)
        feed = FeedConnection(session, "ws://127.0.0.1:1/ws", publisher, metrics)
        partitions: dict[bytes | None, int] = {}

        async def drain() -> None:
            from datetime import UTC, datetime

            done = 0
            while done < count:
                entries = await spool.read(5000, 1.0)
                groups: dict[int, list[Any]] = {}
                for entry in entries:
                    key = entry[1].key
                    partition = partitions.get(key)
                    if partition is None:
                        partition = partitions[key] = hash(key) % 6
                    groups.setdefault(partition, []).append(entry)
                if entries:
                    metrics.observe_acknowledged([message for _, message in entries], datetime.now(UTC))
                    spool.acknowledge(entries[-1][0])
                    done += len(entries)

        cpu = time.process_time()
        drainer = asyncio.create_task(drain())
        await feed._read(_Socket(frames, 64))  # type: ignore[arg-type]
        await drainer
        used = time.process_time() - cpu
        await spool.close()
    produced = counter_totals(metrics.registry, "infoway_bridge_records_produced", "topic")
    if produced.get("trades") != count:
        raise RuntimeError(f"expected {count} trades acknowledged, found {produced}")
    return {"us_per_record": used / count * 1e6}


def run_tree(tree: Path, codes: int, count: int) -> float:
    """One measurement in a fresh process with ``tree``'s ``bridge`` first on the path."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, __file__, "measure", str(codes), str(count)],
        env=environment, capture_output=True, text=True, check=True, cwd=tree,
    )  # fmt: skip
    value: float = json.loads(result.stdout.splitlines()[-1])["us_per_record"]
    return value


def main() -> None:
    """Interleave rounds of ours and the baseline per number of codes; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", default="10,10000", help="symbols, comma-separated (default: %(default)s)")
    parser.add_argument("--records", type=int, default=100_000, help="trades per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--baseline", default=BASELINE, help="commit, or none (default: %(default)s)")
    args = parser.parse_args()
    trees: dict[str, Path] = {"ours": ROOT}
    with tempfile.TemporaryDirectory() as directory:
        if args.baseline != "none":
            archive = subprocess.run(
                ["git", "archive", args.baseline, "bridge", "schemas"], cwd=ROOT, capture_output=True, check=True
            )
            with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
                tar.extractall(directory, filter="data")
            trees["baseline"] = Path(directory)
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for codes in (int(text) for text in args.codes.split(",")):
                for name, tree in trees.items():
                    results.setdefault((name, codes), []).append(run_tree(tree, codes, args.records))
    print(
        f"CPU µs per trade, median of {args.rounds} rounds of {args.records:,} trades (load: {os.getloadavg()[0]:.1f})"
    )
    print("| tree | codes | µs per trade | rounds |")
    print("|---|---|---|---|")
    medians = {key: sorted(values)[len(values) // 2] for key, values in results.items()}
    for (name, codes), values in results.items():
        print(f"| {name} | {codes:,} | {medians[name, codes]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    for codes in sorted({codes for _, codes in medians}):
        if ("baseline", codes) in medians:
            print(
                f"{codes:,} codes: ours {medians['ours', codes] / medians['baseline', codes]:.2f}x the baseline's CPU"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        print(json.dumps(asyncio.run(measure(int(sys.argv[2]), int(sys.argv[3])))))
    else:
        main()
