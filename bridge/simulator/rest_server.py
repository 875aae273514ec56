"""The simulator's REST port: a small asyncio HTTP/1.1 server in front of :class:`~bridge.simulator.rest.RestApi`.

A second port because the WebSocket server (websockets) parses GET requests only and the kline
endpoint is a POST. One request per connection (``Connection: close``), bodies bounded, every
read under a timeout. Besides the vendor's endpoints it serves controls no vendor has, with no key:

* ``GET /sim/rest-fault?mode=rate-limit|quota|unauthorized|ret500|none``: switch the REST fault mode;
* ``GET /sim/offline?seconds=N``: drop every WebSocket connection and refuse handshakes (503) for
  N seconds, so a client sees a gap of N x ``time_scale`` market seconds;
* ``GET /sim/rest-stats``: the REST answers by endpoint and outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import orjson

from bridge.simulator.http_answers import phrase
from bridge.simulator.rest import RestApi

logger = logging.getLogger("bridge.simulator.rest")

MAX_BODY = 1 << 20
MAX_HEADER_LINES = 100
READ_TIMEOUT = 5.0


class RestServer:
    """Serves ``api`` on a TCP port.

    Args:
        api: the pure REST answers.
        market_seconds: the market clock, Unix seconds.
        go_offline: what ``/sim/offline`` does (drop connections, refuse handshakes for N seconds).
    """

    def __init__(
        self, api: RestApi, market_seconds: Callable[[], int], go_offline: Callable[[float], Awaitable[int]]
    ) -> None:
        self.api = api
        self._market_seconds = market_seconds
        self._go_offline = go_offline
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._accept, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        """Stop listening, cancel requests in progress and wait for them; idempotent."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                method, target, headers = await _read_head(reader)
                length = int(headers.get("content-length", "0") or 0)
                if length > MAX_BODY:
                    status, body = 413, b'{"detail":"Request Entity Too Large"}'
                else:
                    payload = await reader.readexactly(length) if length else b""
                    status, body = await self._route(method, target, headers.get("apikey"), payload)
            head = (
                f"HTTP/1.1 {status} {phrase(status)}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            logger.debug("REST request failed: %s", type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, target: str, key: str | None, payload: bytes) -> tuple[int, bytes]:
        split = urlsplit(target)
        query = {name: values[0] for name, values in parse_qs(split.query).items()}
        if split.path == "/sim/rest-fault":
            try:
                self.api.set_fault(query.get("mode", "none"))
            except ValueError as exc:
                return 400, orjson.dumps({"detail": str(exc)})
            logger.info("REST fault mode: %s", self.api.fault)
            return 200, orjson.dumps({"mode": self.api.fault})
        if split.path == "/sim/offline":
            seconds = float(query.get("seconds", "0"))
            dropped = await self._go_offline(seconds)
            return 200, orjson.dumps({"offline_seconds": seconds, "dropped": dropped})
        if split.path == "/sim/rest-stats":
            return 200, orjson.dumps(self.api.stats.answers)
        return self.api.answer(method, split.path, key, payload, self._market_seconds(), time.monotonic())


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    """The request line and headers (names lower-cased).

    Raises:
        ValueError: a malformed request line or too many headers.
    """
    parts = (await reader.readline()).decode("latin-1").split()
    if len(parts) < 2:
        raise ValueError("bad request line")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = (await reader.readline()).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            return parts[0].upper(), parts[1], headers
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    raise ValueError("too many headers")
