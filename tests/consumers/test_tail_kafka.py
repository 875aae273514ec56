"""``infoway-bridge tail`` as a person runs it, against the real broker and registry, on topics the bridge filled."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.consumers.conftest import STREAMS, Produced
from tests.consumers.oracle import full_tuple
from tests.test_tail import trade_message

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"
FORMATS = ("raw", "single-object", "confluent")
TAIL_TIMEOUT_S = 60


def tail(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``infoway-bridge tail`` to its end."""
    return subprocess.run(
        [BRIDGE, "tail", *arguments], capture_output=True, text=True, timeout=TAIL_TIMEOUT_S, check=False
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON lines a tail printed."""
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("wire_format", FORMATS)
def test_tail_prints_every_record_of_every_topic_and_format_decoded(
    wire_format: str, stream: str, produced: Callable[[str, str | None], Produced], request: pytest.FixtureRequest
) -> None:
    """--from-beginning prints each record once, at its partition and offset, with its key and every field exact."""
    registry = request.getfixturevalue("schema_registry") if wire_format == "confluent" else None
    data = produced(wire_format, registry)
    registry_option = ["--registry-url", registry] if registry else []
    result = tail(
        data.topics[stream], "--bootstrap-servers", data.bootstrap, "--from-beginning", "--key", *registry_option
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = lines(result)
    records = data.records[stream]
    assert sorted((line["partition"], line["offset"]) for line in printed) == sorted(
        (record.partition, record.offset) for record in records
    )
    assert all(line["key"] == line["value"]["symbol"] for line in printed)
    assert Counter(full_tuple(stream, line["value"]) for line in printed) == Counter(
        full_tuple(stream, record.value) for record in records
    )


def test_symbol_count_and_headers_narrow_what_is_printed(produced: Callable[[str, str | None], Produced]) -> None:
    """--symbol keeps that key's records, --count stops after N, --headers shows the bridge's headers."""
    data = produced("raw", None)
    arguments = ["--bootstrap-servers", data.bootstrap, "--from-beginning", "--symbol", "ETHUSDT", "--count", "3"]
    result = tail(data.topics["trade"], *arguments, "--headers")
    printed = lines(result)
    assert result.returncode == 0, result.stderr
    assert len(printed) == 3
    assert {line["value"]["symbol"] for line in printed} == {"ETHUSDT"}
    assert all(line["headers"]["stream"] == "trade" and line["headers"]["wire-format"] == "raw" for line in printed)
    assert all("key" not in line for line in printed)


async def _produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value, headers in values:
            await producer.send_and_wait(topic, value, key=b"BTCUSDT", partition=0, headers=headers)
    finally:
        await producer.stop()


def test_an_undecodable_value_is_one_error_line_and_the_tail_goes_on(kafka_bootstrap: str) -> None:
    """A bad value between two good ones prints one stderr line with its partition and offset; both good ones print."""
    topic = f"tail.{uuid.uuid4().hex[:8]}"
    good = trade_message()
    headers = list(good.headers)
    asyncio.run(_produce(kafka_bootstrap, topic, [(good.value, headers), (b"\x06abc", headers), (good.value, headers)]))
    result = tail(topic, "--bootstrap-servers", kafka_bootstrap, "--from-beginning")
    assert result.returncode == 0
    assert [line["offset"] for line in lines(result)] == [0, 2]
    [error] = result.stderr.splitlines()
    assert error.startswith("tail: partition 0 offset 1: does not decode as io.infoway.marketdata.v2.Trade")


def test_follow_prints_records_produced_after_it_started(kafka_bootstrap: str) -> None:
    """Without --from-beginning the tail starts at the end and waits: a record produced later is printed."""
    topic = f"tail.{uuid.uuid4().hex[:8]}"
    good = trade_message()
    old = (good.value, [*good.headers, ("age", b"old")])
    asyncio.run(_produce(kafka_bootstrap, topic, [old]))
    command = [BRIDGE, "tail", topic, "--bootstrap-servers", kafka_bootstrap, "--count", "1", "--headers"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + TAIL_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            asyncio.run(_produce(kafka_bootstrap, topic, [(good.value, [*good.headers, ("age", b"new")])]))
            time.sleep(0.5)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    [line] = [json.loads(text) for text in out.splitlines()]
    assert line["headers"]["age"] == "new"
    assert line["offset"] >= 1


def test_an_unknown_topic_is_refused_by_name(kafka_bootstrap: str) -> None:
    """Tailing a topic that does not exist exits 2 and names it."""
    result = tail("no.such.topic.here", "--bootstrap-servers", kafka_bootstrap, "--from-beginning")
    assert result.returncode == 2
    assert "topic 'no.such.topic.here' does not exist" in result.stderr


def test_unreachable_kafka_exits_3_with_one_line() -> None:
    """A broker that does not answer gives exit 3 and one line naming the address, nothing else."""
    result = tail("infoway.trades", "--bootstrap-servers", "127.0.0.1:1", "--from-beginning")
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert line.startswith("tail: cannot reach Kafka at 127.0.0.1:1")
