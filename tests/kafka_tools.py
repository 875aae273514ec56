"""Reading Kafka back in tests: a real consumer, and values decoded with the Apache ``avro`` package.

The Apache implementation is deliberately not the one the bridge writes with (fastavro), so a
round trip through it checks the bytes against the schema, not against our own reader.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import ConsumerRecord, TopicPartition

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


async def commit_offset(bootstrap: str, group: str, partition: TopicPartition, offset: int) -> None:
    """Commit ``offset`` for ``group`` as a memberless consumer would (what a lost commit marker leaves behind)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: offset})
    finally:
        await consumer.stop()


async def delete_all_records(bootstrap: str, topic: str) -> None:
    """Delete every record ``topic`` holds now (what a broker losing them leaves behind)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.subscribe([topic])  # loads the topic's metadata, which partitions_for_topic answers from
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"no partitions for {topic}"

        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in partitions}, timeout_ms=10_000)
    finally:
        await admin.close()


def apache_schema(name: str) -> avro.schema.Schema:
    """``schemas/<name>.avsc`` parsed by the Apache avro package."""
    return avro.schema.parse((SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8"))


def decode(schema: avro.schema.Schema, value: bytes) -> dict[str, Any]:
    """One raw Avro binary value decoded with the Apache implementation."""
    reader = avro.io.DatumReader(schema)
    datum = reader.read(avro.io.BinaryDecoder(io.BytesIO(value)))
    assert isinstance(datum, dict)
    return datum


async def consume(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    timeout: float = 60.0,
    give_up: Callable[[], bool] = lambda: False,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``count`` records arrived, ``timeout`` passed or ``give_up()``.

    ``give_up`` lets a test stop waiting as soon as the process under test has died. Reads with
    ``isolation.level=read_committed``, as the README tells consumers of exactly-once delivery to.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline and not give_up():
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


def read_sent_frames(path: Path) -> list[dict[str, Any]]:
    """The simulator's record of what it sent: one ``{"business", "frame"}`` object per line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def consume_all(bootstrap: str, topic: str, *, timeout: float = 120.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything committed on ``topic`` now: read (``read_committed``) until every partition reaches its end."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise AssertionError(f"no partitions of {topic} within {timeout:g}s")
            await asyncio.sleep(0.1)
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout:g}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records
