#!/usr/bin/env python3
"""Hot-path throughput of frame -> record -> Avro bytes, as ratios against baselines in the same process.

Baselines, run interleaved with ours on the same frames so machine noise hits both alike:
* ``sdk``: the vendor SDK's own path (stdlib ``json`` + ``infoway._normalize``), which stops at
  normalised dicts and so does less work than ours (no Avro);
* ``json-only``: just ``json.loads`` of each frame, a floor no parser can beat by much.

Prints frames per second for each and the ratios; a ratio above 1 means ours is faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from infoway import _normalize as sdk

from bridge.protocol import KlineInterval, Push, classify_frame
from bridge.protocol.normalize import NORMALIZERS
from bridge.records import Provenance, Stream
from bridge.serialize import RecordSerializer, TopicMap
from bridge.simulator.market import Market

SDK = {10002: sdk.normalize_ws_trade, 10005: sdk.normalize_ws_depth, 10008: sdk.normalize_ws_kline}


def frames(count: int) -> list[str]:
    """A realistic mix: 70 % trades, 25 % depth, 5 % klines, from the simulator's generators."""
    market = Market("crypto", seed=7)
    now = int(time.time() * 1000)
    made = []
    for index in range(count):
        symbol = ("BTCUSDT", "ETHUSDT", "SOLUSDT")[index % 3]
        kind = index % 20
        if kind < 14:
            made.append(market.trade_frame(symbol, now + index).decode())
        elif kind < 19:
            made.append(market.depth_frame(symbol, now + index).decode())
        else:
            made.append(market.kline_frame(symbol, KlineInterval.MIN_1, now + index).decode())
    return made


def ours(serializer: RecordSerializer) -> Callable[[list[str]], None]:
    """The bridge's path: classify, normalise, serialize to Avro bytes."""
    received = datetime.now(UTC)

    def run(batch: list[str]) -> None:
        for sequence, frame in enumerate(batch, 1):
            event = classify_frame(frame)
            assert isinstance(event, Push)
            record = NORMALIZERS[event.stream](event.payload, Provenance("crypto", "c#1", sequence, received))
            serializer.serialize(record)

    return run


def vendor_sdk(batch: list[str]) -> None:
    """The vendor SDK's path: json.loads and its normaliser."""
    for frame in batch:
        message = json.loads(frame)
        SDK[message["code"]](message["data"])


def json_only(batch: list[str]) -> None:
    """Only parse the JSON."""
    for frame in batch:
        json.loads(frame)


def main() -> None:
    """Run the rounds and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000, help="frames per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args()
    batch = frames(args.frames)
    serializer = RecordSerializer(TopicMap({s: s.value for s in Stream}, "dlq"))
    contenders = {"ours": ours(serializer), "sdk": vendor_sdk, "json-only": json_only}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            run(batch)
            rates[name].append(len(batch) / (time.perf_counter() - started))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name:>10}: {value:12,.0f} frames/s (median of {args.rounds})")
    print(f"ours / sdk       = {median['ours'] / median['sdk']:.2f}  (ours also encodes Avro; the SDK does not)")
    print(f"ours / json-only = {median['ours'] / median['json-only']:.2f}")


if __name__ == "__main__":
    main()
