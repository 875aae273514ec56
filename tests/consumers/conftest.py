"""Data for the consumer tests: the real bridge against the simulator, into the session broker, once per format.

Each wire format gets its own topics, filled once per session by the bridge from a simulator that
stops after a fixed number of pushes and records every frame it sent. The fixture waits until
every sent push is on its topic, then reads the topics back with Apache avro: the engines' rows
are compared with that, and that with the frames.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.config_kafka import SerializationConfig
from bridge.records import Stream
from bridge.simulator import Simulator, SimulatorOptions
from tests.consumers.oracle import KafkaRecord, MarketTuple, apache_decoder, canonical, market_tuple, sent_rows
from tests.harness import API_KEY, RunningBridge, bridge_config
from tests.kafka_tools import consume, read_sent_frames

CODES = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
PUSHES = {"trade": 90, "depth": 45, "kline": 30}
STREAMS = ("trade", "depth", "kline")


@dataclass(frozen=True)
class Produced:
    """Topics the bridge filled in one wire format, what was sent to it, and the topics as Apache avro reads them."""

    wire_format: str
    bootstrap: str
    registry: str | None
    topics: dict[str, str]
    sent: dict[str, Counter[MarketTuple]]
    records: dict[str, list[KafkaRecord]]


async def _fill_topics(wire_format: str, bootstrap: str, registry: str | None, record_file: Path) -> dict[str, str]:
    """Run the bridge against a simulator that stops after ``PUSHES``, until every push is on its topic."""
    serialization: dict[str, Any] = {"format": wire_format}
    if registry is not None:
        serialization["registry"] = {"url": registry}
    options = SimulatorOptions(
        port=0, api_key=API_KEY, rate=300, depth_rate=150, kline_rate=100, seed=12, record_sent=record_file,
        max_pushes=PUSHES["trade"], max_depth_pushes=PUSHES["depth"], max_kline_pushes=PUSHES["kline"],
    )  # fmt: skip
    async with Simulator(options) as simulator:
        config = bridge_config(
            simulator.url, bootstrap,
            [{"business": "crypto", "codes": CODES, "streams": list(STREAMS), "kline_types": ["1m", "1h"]}],
            kafka={"topic_creation": {"partitions": 3}},
        )  # fmt: skip
        config = config.model_copy(update={"serialization": SerializationConfig.model_validate(serialization)})
        topics = {stream: config.kafka.topics.for_stream(Stream(stream)) for stream in STREAMS}
        async with RunningBridge(config) as bridge:
            for stream in STREAMS:
                found = await consume(
                    bootstrap, topics[stream], PUSHES[stream], timeout=60, give_up=lambda: bridge.done
                )
                assert len(found) >= PUSHES[stream], f"{topics[stream]}: {len(found)} of {PUSHES[stream]} records"
    return topics


def produce(wire_format: str, bootstrap: str, registry: str | None, folder: Path) -> Produced:
    """Fill fresh topics in ``wire_format`` with the real bridge, then read them back with Apache avro."""
    record_file = folder / f"sent-{wire_format}.jsonl"
    topics = asyncio.run(_fill_topics(wire_format, bootstrap, registry, record_file))
    decode_value = apache_decoder(wire_format, registry)
    records = {}
    for stream in STREAMS:
        found = asyncio.run(consume(bootstrap, topics[stream], PUSHES[stream], timeout=30))
        records[stream] = [
            KafkaRecord(record.partition, record.offset, record.key, record.value, decode_value(stream, record.value))
            for record in found
        ]
    return Produced(wire_format, bootstrap, registry, topics, sent_rows(read_sent_frames(record_file)), records)


@pytest.fixture(scope="session")
def produced(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str | None], Produced]:
    """A function giving the topics of one wire format (and registry), filled on first use, then shared."""
    made: dict[str, Produced] = {}

    def topics_of(wire_format: str, registry: str | None = None) -> Produced:
        if wire_format not in made:
            folder = tmp_path_factory.mktemp("produced")
            made[wire_format] = produce(wire_format, kafka_bootstrap, registry, folder)
        return made[wire_format]

    return topics_of


def assert_topics_hold_what_was_sent(data: Produced) -> None:
    """The topics, read with Apache avro, hold exactly the pushes sent, keyed by symbol: what the engines must meet."""
    for stream in STREAMS:
        rows = [canonical(stream, record.value) for record in data.records[stream]]
        assert Counter(market_tuple(stream, row) for row in rows) == data.sent[stream], stream
        assert [record.key for record in data.records[stream]] == [str(row["symbol"]).encode() for row in rows]
        assert all(isinstance(row["connection_id"], str) and row["connection_id"] for row in rows)
