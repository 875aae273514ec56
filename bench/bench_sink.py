#!/usr/bin/env python3
"""Delivery throughput: spool and sink in each mode against naive aiokafka use, in one process, on one broker.

Contenders, each acknowledging the same records (trade-sized, 50 keys, 6 partitions), in
interleaved rounds so machine noise hits all alike:

* ``send-per-record``: ``await producer.send()`` for every record and a future kept per record
  (the pattern aio-libs/aiokafka#528 shows slowing down badly with thousands in flight);
* ``memory spool, at-least-once``: the sink from a spool without a directory (no disk at all);
* ``disk spool, at-least-once`` and ``disk spool, exactly-once``: the bridge's configurations,
  records appended to segment files (fsync every 1000 records or 50 ms) as fast as possible while
  the sink drains them (saturated: the appender outruns the memory window, so the sink reads the
  files back);
* ``paced``: records appended at 10,000 a second, as a feed would, memory spool against disk
  spool: the CPU per record of each, whose ratio is the spool's pass-through cost;
* ``drain``: the disk spool filled first with the producer stopped (Kafka down), then drained:
  the rate at which a backlog empties after an outage.

Prints records per second (median of the rounds) and the ratios.

Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else starts scripts/kafka-local on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bridge.config import parse_config
from bridge.config_kafka import KafkaConfig
from bridge.config_spool import DeliveryConfig, DeliveryMode, SpoolConfig
from bridge.metrics import BridgeMetrics
from bridge.records import Stream
from bridge.serialize import KafkaMessage, RecordSerializer, TopicMap
from bridge.sink import KafkaSink
from bridge.spool import Spool
from bridge.topics import ensure_topics
from bridge.workers import free_ports

REPO = Path(__file__).resolve().parent.parent
VALUE = bytes(120)  # about the size of an Avro trade


def messages(topic: str, count: int) -> list[KafkaMessage]:
    """``count`` trade-sized messages over 50 keys."""
    now = datetime.now(UTC)
    return [
        KafkaMessage(topic, f"SYM{i % 50}".encode(), VALUE, (("stream", b"trade"),), Stream.TRADE, "crypto", now, now)
        for i in range(count)
    ]


def kafka_config(bootstrap: str, topic: str) -> KafkaConfig:
    """A ``kafka`` section writing ``topic``, with a fresh offsets topic."""
    run = uuid.uuid4().hex[:8]
    topics = {"trade": topic, "dead_letter": topic, "offsets": f"bench.{run}.offsets"}
    return parse_config(
        {"source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
         "kafka": {"bootstrap_servers": bootstrap, "topics": topics}}, {},
    ).kafka  # fmt: skip


async def spooled(
    bootstrap: str,
    topic: str,
    batch: list[KafkaMessage],
    *,
    mode: DeliveryMode,
    disk: bool,
    prefill: bool = False,
    paced: float | None = None,
) -> float:
    """Records per second appended to a spool and acknowledged by Kafka through the sink.

    With ``paced`` (records a second) the records are appended at that rate, as a feed would, and
    the result is this process's CPU microseconds per record instead (utime + stime).
    """
    kafka = kafka_config(bootstrap, topic)
    metrics = BridgeMetrics(CollectorRegistry())
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as directory:
        spool = Spool(
            SpoolConfig(dir=Path(directory) if disk else None, max_bytes=4 << 30, segment_bytes=64 << 20), metrics
        )
        recovered = spool.open()
        delivery = DeliveryConfig(mode=mode, transactional_id=f"bench.{uuid.uuid4().hex[:8]}")
        assert delivery.transactional_id is not None
        serializer = RecordSerializer(TopicMap(dict.fromkeys(Stream, topic), topic))
        sink = KafkaSink(
            kafka, delivery, spool, serializer, metrics,
            transactional_id=delivery.transactional_id, spool_identity=recovered.identity,
        )  # fmt: skip
        if mode is DeliveryMode.EXACTLY_ONCE:
            await ensure_topics(kafka, [kafka.topics.offsets], compacted={kafka.topics.offsets: 1})
        committed = await sink.start()
        spool.resume(committed or 0)
        if prefill:
            for message in batch:
                spool.append(message)
            await spool.sync()
        started, cpu = time.perf_counter(), time.process_time()
        sink.begin()
        if paced is not None:
            await _append_paced(spool, batch, paced)
        elif not prefill:
            for index, message in enumerate(batch):
                spool.append(message)
                if index % 500 == 0:
                    await asyncio.sleep(0)  # let the sink and the sync task run, as the feed does between frames
        await spool.wait_until_empty()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert await sink.close(timeout=120) == 0
        await spool.close()
    return cpu / len(batch) * 1e6 if paced is not None else len(batch) / elapsed


async def _append_paced(spool: Spool, batch: list[KafkaMessage], rate: float) -> None:
    """Append ``batch`` at ``rate`` records a second, in 10 ms ticks."""
    started = time.perf_counter()
    appended = 0
    while appended < len(batch):
        due = min(int((time.perf_counter() - started) * rate), len(batch))
        for message in batch[appended:due]:
            spool.append(message)
        appended = due
        await asyncio.sleep(0.01)


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
    exactly, least = DeliveryMode.EXACTLY_ONCE, DeliveryMode.AT_LEAST_ONCE
    contenders: dict[str, Callable[[], Awaitable[float]]] = {
        "send-per-record": lambda: send_per_record(bootstrap, topic, batch),
        "memory spool, at-least-once": lambda: spooled(bootstrap, topic, batch, mode=least, disk=False),
        "disk spool, at-least-once": lambda: spooled(bootstrap, topic, batch, mode=least, disk=True),
        "disk spool, exactly-once": lambda: spooled(bootstrap, topic, batch, mode=exactly, disk=True),
        "drain, at-least-once": lambda: spooled(bootstrap, topic, batch, mode=least, disk=True, prefill=True),
        "drain, exactly-once": lambda: spooled(bootstrap, topic, batch, mode=exactly, disk=True, prefill=True),
    }
    paced = min(10_000.0, records / 3)
    contenders["paced, memory spool (CPU us/record)"] = lambda: spooled(
        bootstrap, topic, batch, mode=least, disk=False, paced=paced
    )
    contenders["paced, disk spool (CPU us/record)"] = lambda: spooled(
        bootstrap, topic, batch, mode=least, disk=True, paced=paced
    )
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(rounds):
        for name, contender in contenders.items():
            rates[name].append(await contender())
        print(f"round {index + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:,.1f}" for k, v in rates.items()), flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        unit = "CPU us per record" if "paced" in name else "records/s acknowledged"
        print(f"{name:>36}: {value:10,.1f} {unit} (median of {rounds}, {records:,} records each)")
    ratios = [
        ("disk spool / memory spool, saturated throughput", "disk spool, at-least-once", "memory spool, at-least-once"),
        (
            f"disk spool / memory spool, CPU per record at {paced:,.0f}/s (the pass-through cost)",
            "paced, disk spool (CPU us/record)",
            "paced, memory spool (CPU us/record)",
        ),
        ("exactly-once / at-least-once, disk spool", "disk spool, exactly-once", "disk spool, at-least-once"),
        ("memory spool / send-per-record", "memory spool, at-least-once", "send-per-record"),
        ("drain after an outage / live, at-least-once", "drain, at-least-once", "disk spool, at-least-once"),
        ("drain after an outage / live, exactly-once", "drain, exactly-once", "disk spool, exactly-once"),
    ]
    for label, numerator, denominator in ratios:
        print(f"{label}: {median[numerator] / median[denominator]:.2f}")


def main() -> None:
    """Find or start a broker, then run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="records per round and contender (default 50000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per producer (default 3)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    port = None
    if not bootstrap:
        port, controller = free_ports(2)
        kafka_local = [sys.executable, str(REPO / "scripts" / "kafka-local")]
        started = subprocess.run(
            [*kafka_local, "start", "--port", str(port), "--controller-port", str(controller)],
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
