#!/usr/bin/env python3
"""The bridge written the obvious way, as the end-to-end benchmark's baseline (bench/bench_e2e.py).

websockets in, json, fastavro, one aiokafka ``send()`` per message (acks=all, idempotent, as the
bridge): no spool, no exactly-once, no dead letters, no metrics. Usage:
``naive_bridge.py URL BOOTSTRAP TOPIC CODES`` (trades only); it runs until SIGTERM, then flushes.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
import time
from decimal import Decimal
from typing import Any

import fastavro
import websockets
from aiokafka import AIOKafkaProducer

from bridge.serialize import load_schema

TRADE = 10002


def unscaled(text: str) -> bytes:
    """A decimal string as Avro decimal(38,18) bytes."""
    value = int(Decimal(text).scaleb(18))
    return value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)


async def main(url: str, bootstrap: str, topic: str, codes: str) -> None:
    """Subscribe trades for ``codes``, then encode and send every push until SIGTERM."""
    schema = load_schema("trade")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with websockets.connect(url, max_size=None) as socket:
        await socket.send(json.dumps({"code": 10000, "trace": "naive", "data": {"codes": codes}}))
        reader = asyncio.ensure_future(read(socket, producer, schema, topic))
        await stop.wait()
        reader.cancel()
    await producer.stop()


async def read(
    socket: websockets.ClientConnection, producer: AIOKafkaProducer, schema: dict[str, Any], topic: str
) -> None:
    """One push in, one record out."""
    async for frame in socket:
        received = int(time.time() * 1000)
        message = json.loads(frame)
        if message.get("code") != TRADE:
            continue
        data = message["data"]
        datum = {
            "symbol": data["s"], "business": "crypto", "event_time": data["t"], "received_time": received,
            "price": unscaled(data["p"]), "size": unscaled(data["v"]),
            "amount": unscaled(data["vw"]) if "vw" in data else None,
            "side": {1: "BUY", 2: "SELL"}.get(data.get("td"), "UNKNOWN"), "trade_type": data.get("ty"),
            "connection_id": "naive", "sequence": 0,
        }  # fmt: skip
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, datum)
        await producer.send(topic, buffer.getvalue(), key=data["s"].encode(), timestamp_ms=received)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
