"""The Kafka side against real brokers: order, restarts, a dead producer, bounded shutdown, dead letters.

The wire-format round trips run the whole bridge (simulator in, Kafka out) and decode with the
Apache avro package; in confluent format the reader fetches the writer schema from a real
registry by the id in each value, as a downstream consumer would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import avro.schema
import orjson
import pytest

from bridge.config import parse_config
from bridge.errors import TopicMissing
from bridge.positions import position_group, position_partition
from bridge.records import Stream
from bridge.serialize import KafkaMessage
from bridge.simulator import GatewayRules, Simulator, SimulatorOptions
from bridge.topics import ensure_topics
from tests.conftest import LocalBroker
from tests.harness import API_KEY, RunningBridge, SpooledSink, bridge_config, eventually, topics
from tests.kafka_tools import apache_schema, commit_offset, consume, decode, delete_all_records, read_sent_frames

SCHEMA_OF = {"trade": "trade", "depth": "depth", "kline": "kline"}


def kafka_section(bootstrap: str, **overrides: Any) -> Any:
    """A validated ``kafka`` section for sink-level tests."""
    document = {"source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
                "kafka": {"bootstrap_servers": bootstrap, "topics": topics(), **overrides}}  # fmt: skip
    return parse_config(document, {}).kafka


def message(topic: str, key: str, value: bytes) -> KafkaMessage:
    """A plain message for sink-level tests (the value needs no schema there)."""
    now = datetime.now(UTC)
    return KafkaMessage(topic, key.encode(), value, (("stream", b"trade"),), Stream.TRADE, "crypto", now, now)


async def started_sink(kafka: Any, **delivery: Any) -> SpooledSink:
    """A started sink on a memory spool whose trade and dead-letter topics exist."""
    return await SpooledSink(kafka, delivery=delivery).start()


def values_by_key(records: list[Any]) -> dict[bytes, list[int]]:
    """Each key's integer values in the order consumed."""
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(int(record.value))
    return by_key


def decoder_for(wire_format: str, registry_url: str | None) -> Any:
    """A function that decodes one value of the given wire format with Apache avro."""
    from urllib.request import urlopen

    def decode_value(schema_name: str, value: bytes) -> dict[str, Any]:
        if wire_format == "raw":
            return decode(apache_schema(schema_name), value)
        if wire_format == "single-object":
            assert value[:2] == b"\xc3\x01"
            return decode(apache_schema(schema_name), value[10:])
        assert value[0] == 0, "confluent magic byte"
        schema_id = int.from_bytes(value[1:5], "big")
        with urlopen(f"{registry_url}/schemas/ids/{schema_id}") as response:  # noqa: S310 (a local registry)
            writer = avro.schema.parse(json.loads(response.read())["schema"])
        return decode(writer, value[5:])

    return decode_value


@pytest.mark.parametrize("wire_format", ["raw", "single-object", "confluent"])
async def test_all_three_streams_round_trip_in_every_wire_format(
    wire_format: str, kafka_bootstrap: str, request: pytest.FixtureRequest
) -> None:
    """Trades, depth and klines reach their topics and decode with Apache avro in raw, single-object and confluent."""
    registry = request.getfixturevalue("schema_registry") if wire_format == "confluent" else None
    serialization: dict[str, Any] = {"format": wire_format}
    if registry is not None:
        serialization["registry"] = {"url": registry}
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=200, kline_rate=50)) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap,
            [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"], "streams": ["trade", "depth", "kline"],
              "kline_types": ["1m", "1h"]}],
        )  # fmt: skip
        config = config.model_copy(update={"serialization": type(config.serialization).model_validate(serialization)})
        async with RunningBridge(config):
            found = {
                stream: await consume(kafka_bootstrap, config.kafka.topics.for_stream(Stream(stream)), 20, timeout=30)
                for stream in ("trade", "depth", "kline")
            }
    decode_value = decoder_for(wire_format, registry)
    for stream, records in found.items():
        assert len(records) >= 20, stream
        for record in records:
            value = decode_value(SCHEMA_OF[stream], record.value)
            assert record.key == value["symbol"].encode()
            assert value["business"] == "crypto"
            headers = dict(record.headers)
            assert headers["stream"] == stream.encode()
            assert headers["wire-format"] == wire_format.encode()
            if stream == "depth":
                assert value["bids"][0]["price"] < value["asks"][0]["price"]
            if stream == "kline":
                assert value["interval"] in {"1m", "1h"}
                assert value["low"] <= value["close"] <= value["high"]


async def test_per_key_order_holds_across_10000_records(kafka_bootstrap: str) -> None:
    """10,000 records over 40 keys and 6 partitions come back in the order they were put, per key."""
    kafka = kafka_section(kafka_bootstrap, topic_creation={"partitions": 6})
    topic = kafka.topics.trade
    sink = await started_sink(kafka)
    for sequence in range(10_000):
        sink.put(message(topic, f"SYM{sequence % 40}", str(sequence).encode()))
    assert await sink.close() == 0
    records = await consume(kafka_bootstrap, topic, 10_000, timeout=60)
    by_key = values_by_key(records)
    assert len(records) == 10_000
    assert len({record.partition for record in records}) == 6
    assert all(values == sorted(values) for values in by_key.values())
    assert sorted(v for values in by_key.values() for v in values) == list(range(10_000))


async def test_broker_restart_mid_stream_leaves_no_duplicate_and_no_gap(
    tmp_path: Path, own_broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker restart while trades flow: every trade the simulator sent is in Kafka exactly once."""
    caplog.set_level(logging.INFO)
    sent_file = tmp_path / "sent.jsonl"
    total = 1500
    async with Simulator(
        SimulatorOptions(port=0, api_key=API_KEY, rate=300, max_pushes=total, record_sent=sent_file)
    ) as sim:
        config = bridge_config(sim.url, own_broker.bootstrap, [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: running.delivered >= 300, what="300 records delivered")
            await asyncio.to_thread(own_broker.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(own_broker.start, keep_data=True)
            await eventually(lambda: sim.stats.trades_sent == total, timeout=60, what="all trades sent")
            await eventually(lambda: running.pending == 0, timeout=60, what="everything acknowledged")
        records = await consume(own_broker.bootstrap, config.kafka.topics.trade, total + 50, timeout=15)
    sent = [orjson.loads(line["frame"])["data"] for line in read_sent_frames(sent_file)]
    values = [decode(apache_schema("trade"), record.value) for record in records]
    keyed = Counter((v["symbol"], v["price"], v["size"], int(v["event_time"].timestamp() * 1000)) for v in values)
    expected = Counter((d["s"], Decimal(d["p"]), Decimal(d["v"]), d["t"]) for d in sent)
    assert len(sent) == total
    assert keyed == expected, "a duplicate or a gap"
    assert len(values) == total


@pytest.mark.parametrize("mode", ["exactly-once", "at-least-once"])
async def test_a_dead_producer_is_replaced_without_loss_or_reordering(kafka_bootstrap: str, mode: str) -> None:
    """When the producer's sender dies (as OutOfOrderSequenceNumber leaves it, aiokafka #1017), the sink replaces it.

    A single-node broker cannot be made to answer OutOfOrderSequenceNumber on demand, so the test
    ends the real producer's sender task, the state #1017 leaves behind: batches then wait forever.
    """
    kafka = kafka_section(kafka_bootstrap, delivery_timeout_seconds=2, request_timeout_seconds=2)
    topic = kafka.topics.trade
    sink = await started_sink(kafka, mode=mode)
    for sequence in range(500):
        sink.put(message(topic, f"K{sequence % 5}", str(sequence).encode()))
    await eventually(lambda: sink.pending == 0, what="the first 500 acknowledged")
    sender_task = sink.sink.producer.current._sender.sender_task  # type: ignore[union-attr]
    sender_task.cancel()
    for sequence in range(500, 1000):
        sink.put(message(topic, f"K{sequence % 5}", str(sequence).encode()))
    await eventually(lambda: sink.pending == 0, timeout=30, what="the next 500 acknowledged by a new producer")
    assert sink.sink.producer.replaced == 1
    assert await sink.close() == 0
    by_key = values_by_key(await consume(kafka_bootstrap, topic, 1000, timeout=30))
    assert sorted(v for values in by_key.values() for v in values) == list(range(1000))
    assert all(values == sorted(values) for values in by_key.values())


@pytest.mark.parametrize("lost", ["records and offset", "offset only"])
async def test_a_transaction_kafka_loses_while_the_sink_runs_is_delivered_again_and_only_then(
    kafka_bootstrap: str, lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Kafka's committed position falls behind what it acknowledged while the sink runs (a broker that lost its
    last transactions as it stopped, seen on Kafka 4.4): after the next failed round the sink looks for those
    records and sends again exactly the ones the topics lack, in order.

    Kafka cannot be made to lose a transaction on demand, so the test leaves what such a loss leaves: the group
    offset committed back to 0, and the records deleted too or still there; the round that fails next is one whose
    producer's sender has ended (as in the test above).
    """
    caplog.set_level(logging.INFO, "bridge")
    kafka = kafka_section(kafka_bootstrap, delivery_timeout_seconds=2, request_timeout_seconds=2)
    topic = kafka.topics.trade
    sink = await started_sink(kafka)
    for sequence in range(300):
        sink.put(message(topic, f"K{sequence % 5}", str(sequence).encode()))
    await eventually(lambda: sink.pending == 0, what="the first 300 acknowledged")
    if lost == "records and offset":
        await delete_all_records(kafka_bootstrap, topic)
        assert await consume(kafka_bootstrap, topic, 1, timeout=2) == []
    group = position_group(sink.sink.transactional_id, sink.sink.spool_identity)
    await commit_offset(kafka_bootstrap, group, position_partition(kafka), 0)
    sink.sink.producer.current._sender.sender_task.cancel()  # type: ignore[union-attr]
    for sequence in range(300, 400):
        sink.put(message(topic, f"K{sequence % 5}", str(sequence).encode()))
    await eventually(lambda: sink.pending == 0, timeout=60, what="the next 100 acknowledged")
    assert await sink.close() == 0
    by_key = values_by_key(await consume(kafka_bootstrap, topic, 450, timeout=10))
    assert sorted(v for values in by_key.values() for v in values) == list(range(400))
    assert all(values == sorted(values) for values in by_key.values())
    assert "is behind the 300 it acknowledged; looking for records 1 to 300" in caplog.text
    if lost == "records and offset":
        assert "Kafka lost 300 record(s) it had acknowledged" in caplog.text
    else:
        assert "the topics hold every one of those records: nothing is delivered again" in caplog.text


async def test_shutdown_is_bounded_while_the_broker_is_down(own_broker: LocalBroker) -> None:
    """With Kafka gone, stopping the sink returns after flush_timeout and says how many records were not delivered."""
    kafka = kafka_section(own_broker.bootstrap, flush_timeout_seconds=2, request_timeout_seconds=2)
    topic = kafka.topics.trade
    sink = await started_sink(kafka)
    sink.put(message(topic, "K", b"before"))
    await eventually(lambda: sink.pending == 0, what="the first record acknowledged")
    await asyncio.to_thread(own_broker.stop)
    for index in range(50):
        sink.put(message(topic, "K", str(index).encode()))
    undelivered = await asyncio.wait_for(sink.close(), 30)
    assert undelivered == 50
    await asyncio.to_thread(own_broker.start, keep_data=True)


@pytest.mark.parametrize("mode", ["exactly-once", "at-least-once"])
async def test_a_record_kafka_refuses_for_good_goes_to_the_dead_letter_topic(kafka_bootstrap: str, mode: str) -> None:
    """A record over the broker's size limit is dead-lettered with the reason; its neighbours are delivered."""
    kafka = kafka_section(kafka_bootstrap, max_batch_bytes=4 << 20)
    topic = kafka.topics.trade
    sink = await started_sink(kafka, mode=mode)
    sink.put(message(topic, "K", b"small-1"))
    sink.put(message(topic, "K", bytes(3 << 20)))
    sink.put(message(topic, "K", b"small-2"))
    assert await sink.close() == 0
    assert sink.sink.failed == 1
    delivered = await consume(kafka_bootstrap, topic, 2, timeout=30)
    assert [record.value for record in delivered] == [b"small-1", b"small-2"]
    (letter,) = await consume(kafka_bootstrap, kafka.topics.dead_letter, 1, timeout=30)
    value = decode(apache_schema("dead_letter"), letter.value)
    assert (value["reason"], value["stage"], value["target_topic"]) == ("record_too_large", "produce", topic)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_every_compression_codec_round_trips(codec: str, kafka_bootstrap: str) -> None:
    """Each configurable codec is installed and produces records a consumer reads back."""
    kafka = kafka_section(kafka_bootstrap, compression=codec)
    sink = await started_sink(kafka)
    for index in range(100):
        sink.put(message(kafka.topics.trade, "K", b"compressible " * 20 + str(index).encode()))
    assert await sink.close() == 0
    records = await consume(kafka_bootstrap, kafka.topics.trade, 100, timeout=30)
    assert [int(r.value.rsplit(b" ", 1)[1]) for r in records] == list(range(100))


async def test_missing_topic_is_named_when_creation_is_off(kafka_bootstrap: str) -> None:
    """With create_topics off, a missing topic stops the start with its name."""
    kafka = kafka_section(kafka_bootstrap, create_topics=False)
    with pytest.raises(TopicMissing, match=f"topic '{kafka.topics.trade}' does not exist"):
        await ensure_topics(kafka, [kafka.topics.trade])


async def test_topics_are_created_with_the_configured_partitions(kafka_bootstrap: str) -> None:
    """Creation makes the missing topics with the configured partition count, and leaves existing ones alone."""
    kafka = kafka_section(kafka_bootstrap, topic_creation={"partitions": 4})
    names = [kafka.topics.trade, kafka.topics.dead_letter]
    assert await ensure_topics(kafka, names) == names
    assert await ensure_topics(kafka, names) == []


async def test_garbage_goes_to_the_dead_letter_topic_while_the_stream_goes_on(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Interleaved garbage lands in the dead-letter topic with reasons and raw text; every trade still arrives."""
    sent_file = tmp_path / "sent.jsonl"
    async with Simulator(
        SimulatorOptions(
            port=0,
            api_key=API_KEY,
            rate=300,
            max_pushes=300,
            record_sent=sent_file,
            rules=GatewayRules(garbage_every=20),
        )
    ) as sim:
        config = bridge_config(sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}])
        async with RunningBridge(config) as running:
            await eventually(lambda: sim.stats.trades_sent == 300, what="300 trades sent")
            trades = await consume(kafka_bootstrap, config.kafka.topics.trade, 300, timeout=30)
            garbage_sent = sim.stats.garbage_sent
            dead = await consume(kafka_bootstrap, config.kafka.topics.dead_letter, garbage_sent, timeout=30)
    assert len(trades) == 300
    assert garbage_sent >= 10
    letters = [decode(apache_schema("dead_letter"), record.value) for record in dead]
    assert len(letters) == garbage_sent
    reasons = Counter(letter["reason"] for letter in letters)
    assert set(reasons) == {"not_json", "invalid_json", "binary_frame", "unknown_code", "not_a_decimal"}
    kinds = [line["garbage"] for line in read_sent_frames(sent_file) if "garbage" in line]
    assert len(kinds) == garbage_sent
    for letter in letters:
        assert (letter["business"], letter["connection_id"]) == ("crypto", f"crypto-0#1@{running.bridge.run_id}")
        assert letter["raw"]
        assert API_KEY not in letter["raw"]
    assert {dict(record.headers)["infoway.errors.reason"].decode() for record in dead} == set(reasons)


def test_kcat_reads_the_keys(kafka_bootstrap: str) -> None:
    """kcat, a Kafka client we did not write, reads back each record's key as the symbol."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat is not None, "kcat is installed by `make test` (Debian package kcat)"
    topic = f"kcat.{uuid.uuid4().hex[:8]}"

    async def produce() -> None:
        kafka = kafka_section(kafka_bootstrap)
        await ensure_topics(kafka, [topic])
        sink = await started_sink(kafka)
        for symbol in ("BTCUSDT", "AAPL.US", "0700.HK"):
            sink.put(message(topic, symbol, b"v"))
        assert await sink.close() == 0

    asyncio.run(produce())
    result = subprocess.run(
        [kcat, "-b", kafka_bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%k\n"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert sorted(result.stdout.split()) == ["0700.HK", "AAPL.US", "BTCUSDT"]
