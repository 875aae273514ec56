#!/usr/bin/env python3
"""Producer throughput: the bridge's sink against naive aiokafka use, in one process, on one broker.

Baseline ``send-per-record``: ``await producer.send()`` for every record and a future kept per
record (the pattern aio-libs/aiokafka#528 shows slowing down badly with thousands in flight).
Ours: ``KafkaSink`` (per-partition lanes, ``create_batch``/``send_batch``, one future per batch).
Both are idempotent with ``acks=all``; rounds alternate so machine noise hits both alike. Prints
records per second and the ratio (above 1: ours is faster).

Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else starts scripts/kafka-local on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bridge.config import parse_config
from bridge.metrics import BridgeMetrics
from bridge.records import Stream
from bridge.serialize import KafkaMessage, RecordSerializer, TopicMap
from bridge.sink import KafkaSink
from bridge.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
VALUE = bytes(120)  # about the size of an Avro trade


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def messages(topic: str, count: int) -> list[KafkaMessage]:
    """``count`` trade-sized messages over 50 keys."""
    now = datetime.now(UTC)
    return [
        KafkaMessage(topic, f"SYM{i % 50}".encode(), VALUE, (("stream", b"trade"),), Stream.TRADE, "crypto", now, now)
        for i in range(count)
    ]


async def ours(bootstrap: str, topic: str, batch: list[KafkaMessage]) -> float:
    """Records per second through KafkaSink, acknowledged."""
    kafka = parse_config(
        {"source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
         "kafka": {"bootstrap_servers": bootstrap, "queue_max_records": len(batch) + 1}}, {},
    ).kafka  # fmt: skip
    sink = KafkaSink(
        kafka, RecordSerializer(TopicMap(dict.fromkeys(Stream, topic), topic)), BridgeMetrics(CollectorRegistry())
    )
    await sink.start()
    started = time.perf_counter()
    for message in batch:
        await sink.put(message)
    assert await sink.close(timeout=120) == 0
    return len(batch) / (time.perf_counter() - started)


async def send_per_record(bootstrap: str, topic: str, batch: list[KafkaMessage]) -> float:
    """Records per second with one ``send()`` and one future per record, all awaited at the end."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(m.topic, m.value, key=m.key, headers=list(m.headers)) for m in batch]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return len(batch) / elapsed


async def run(bootstrap: str, records: int, rounds: int) -> None:
    """Alternate the two producers for ``rounds`` rounds and print medians and the ratio."""
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    kafka = parse_config(
        {"source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
         "kafka": {"bootstrap_servers": bootstrap, "topic_creation": {"partitions": 6}}}, {},
    ).kafka  # fmt: skip
    await ensure_topics(kafka, [topic])
    batch = messages(topic, records)
    rates: dict[str, list[float]] = {"ours (KafkaSink)": [], "send-per-record": []}
    for index in range(rounds):
        rates["ours (KafkaSink)"].append(await ours(bootstrap, topic, batch))
        rates["send-per-record"].append(await send_per_record(bootstrap, topic, batch))
        print(f"round {index + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name:>18}: {value:10,.0f} records/s acknowledged (median of {rounds}, {records:,} records each)")
    print(f"ours / send-per-record = {median['ours (KafkaSink)'] / median['send-per-record']:.2f}")


def main() -> None:
    """Find or start a broker, then run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="records per round (default 50000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per producer (default 3)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    port = None
    if not bootstrap:
        port = free_port()
        kafka_local = [sys.executable, str(REPO / "scripts" / "kafka-local")]
        started = subprocess.run(
            [*kafka_local, "start", "--port", str(port), "--controller-port", str(free_port())],
            stdout=subprocess.PIPE, text=True, check=True,
        )  # fmt: skip
        bootstrap = started.stdout.strip()
    try:
        asyncio.run(run(bootstrap, args.records, args.rounds))
    finally:
        if port is not None:
            subprocess.run([*kafka_local, "stop", "--port", str(port)], check=False)


if __name__ == "__main__":
    main()
