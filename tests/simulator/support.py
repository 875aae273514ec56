"""Helpers for the simulator tests: options, connecting, and reading frames with deadlines."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.simulator import Simulator, SimulatorOptions

API_KEY = "test-key"
WAIT = 3.0
"""Seconds any awaited frame may take before the test fails instead of hanging."""
# A plain decimal string as the vendor writes it: digits, an optional fraction, no sign or exponent.
DECIMAL_TEXT = re.compile(r"\d+(\.\d+)?")
BASE_OPTIONS = SimulatorOptions(host="127.0.0.1", port=0, api_key=API_KEY, rate=2000.0, seed=7)


def sim_options(**overrides: Any) -> SimulatorOptions:
    """The test defaults (port 0, a known key, a fixed seed) with ``overrides`` applied."""
    return replace(BASE_OPTIONS, **overrides)


def url_for(sim: Simulator, business: str = "crypto", key: str | None = API_KEY) -> str:
    """The connection URL of ``sim`` for ``business``, with ``key`` (or none)."""
    query = f"business={business}" + ("" if key is None else f"&apikey={key}")
    return f"{sim.url}?{query}"


@asynccontextmanager
async def session(sim: Simulator, business: str = "crypto") -> AsyncIterator[ClientConnection]:
    """A connection past its first frames (the stock greeting and the welcome)."""
    # An unbounded receive queue keeps the client reading the socket after a test stops calling
    # recv(), so the closing handshake completes at once instead of after close_timeout.
    async with connect(url_for(sim, business), max_queue=None) as ws:
        if business == "stock":
            assert await recv_text(ws) == "You have permission to subscribe to all market data"
        assert await recv_json(ws) == {"code": 200, "msg": "ws connect success"}
        yield ws


async def http_request(
    sim: Simulator, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP/1.1 request to the simulator's port: the status, headers (lower-case names) and body.

    The simulator closes after each answer, so the body is everything up to the end of the stream.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{sim.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        async with asyncio.timeout(WAIT):
            raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split(" ")[1]), parsed, content


async def send_request(ws: ClientConnection, code: int, trace: str, data: Any = None) -> None:
    """Send a client frame shaped as the bridge sends them (``data`` left out when ``None``)."""
    frame: dict[str, Any] = {"code": code, "trace": trace}
    if data is not None:
        frame["data"] = data
    await ws.send(json.dumps(frame))


async def recv_text(ws: ClientConnection) -> str:
    """The next frame, which must be text and come within :data:`WAIT` seconds."""
    async with asyncio.timeout(WAIT):
        message = await ws.recv()
    assert isinstance(message, str)
    return message


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    """The next frame, which must be a JSON object."""
    parsed = json.loads(await recv_text(ws))
    assert isinstance(parsed, dict)
    return parsed


async def recv_code(ws: ClientConnection, code: int) -> dict[str, Any]:
    """The next frame with ``code``, skipping pushes and other frames before it."""
    async with asyncio.timeout(WAIT):
        while True:
            frame = await recv_json(ws)
            if frame.get("code") == code:
                return frame


async def collect(ws: ClientConnection, code: int, count: int) -> list[dict[str, Any]]:
    """The ``data`` of the next ``count`` frames with ``code``, skipping others."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        while len(found) < count:
            frame = await recv_json(ws)
            if frame.get("code") == code:
                found.append(frame["data"])
    return found


async def frames_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every JSON frame that arrives within ``seconds``."""
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(left):
                message = await ws.recv()
        except TimeoutError:
            break
        assert isinstance(message, str)
        found.append(json.loads(message))
    return found


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, polling every 10 ms, for at most :data:`WAIT` seconds.

    The simulator's counters have no change notification, so polling is the honest way to wait.
    """
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - a plain counter has no event to await
            await asyncio.sleep(0.01)


async def read_until_closed(ws: ClientConnection) -> tuple[list[str | bytes], ConnectionClosed]:
    """Every frame, text or binary, until the connection closes, and the exception that said so."""
    frames: list[str | bytes] = []
    async with asyncio.timeout(WAIT):
        while True:
            try:
                frames.append(await ws.recv())
            except ConnectionClosed as closed:
                return frames, closed


def is_push(frame: str | bytes) -> bool:
    """Whether a frame is a well-formed trade, depth or kline push."""
    if not isinstance(frame, str) or not frame.startswith("{"):
        return False
    try:
        parsed = json.loads(frame)
    except json.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("code") in (10002, 10005, 10008) and parsed["data"].get("p") != "abc"
