"""A local server that speaks the vendor's WebSocket protocol, for demos, tests and benchmarks.

Theory of operation
-------------------
The handshake is checked in ``process_request``: a wrong path is refused with 404 and a wrong or
missing key with 401 and the vendor's JSON body, before any WebSocket frame (protocol page,
"Endpoint and authentication"). An accepted connection gets the welcome frame (after the plain
text greeting on ``business=stock``) and then two tasks:

* a *reader* answers client frames: subscribes, unsubscribes and heartbeats are acked (or
  refused with the vendor's error frames) and change the connection's subscriptions;
* a *sender*, the only task that writes to the socket, sends control replies first and then
  the pushes it owes, each built at send time so its timestamp is the real time of sending.

One *pacer* task per server turns the configured rates into pushes owed. Every 10 ms it adds
``rate x elapsed`` to a fractional credit per stream and hands the whole pushes due round-robin
to the subscribed (connection, code) pairs (for klines, (connection, code, interval)), so the
rate is a total over all pairs whatever their number. A push owed is a small tuple in a
connection's backlog; when a slow client's backlog is full the push is skipped and counted
instead of queued, so memory stays bounded whatever the client does. The socket write itself
is awaited, so the websockets write buffer is the other bound.

A connection on a business without data (any value outside
:data:`~bridge.simulator.market.BUSINESSES`) is acked and then stays silent, like the vendor.

``max_pushes`` counts pushes *reserved* (owed or sent) so the total sent stops at exactly N;
a reservation is released when the push cannot go (its code was unsubscribed or the socket
closed first), so another connection can still receive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import math
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.protocol.codes import KlineInterval
from bridge.records import Stream
from bridge.redact import RedactingFilter, redact
from bridge.simulator.market import BUSINESSES, Market
from bridge.simulator.session import GREETING, WELCOME, ClientInfo, answer

logger = logging.getLogger("bridge.simulator")

WS_PATH = "/ws"
INVALID_KEY_BODY = '{"message":"Invalid API key in request"}'
"""The body of the 401 that refuses a key (protocol page, "Endpoint and authentication")."""

DEFAULT_API_KEY = "demo-key"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_RATE = 1000.0
DEFAULT_TICK_SECONDS = 0.01
MIN_BACKLOG = 4096

# Yield to the loop after this many sends in a row: a send that does not fill the write buffer
# never yields, and one busy connection must not starve the pacer and the other connections.
_SENDS_PER_YIELD = 64
# Replies owed to one client before its reader stops reading (and so stops the client).
_CONTROL_LIMIT = 64
# Owed pushes accumulate for at most this long while no client can take them (a burst cap).
_MAX_CREDIT_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything the simulator can be told; validated at construction.

    Rates are pushes per second in total over all subscribed pairs. ``None`` for ``depth_rate``
    means "same as ``rate``" and for ``kline_rate`` ``max(1, rate / 10)``; the ``max_*`` limits
    are totals over all connections, ``None`` meaning unlimited. ``seed`` ``None`` draws a seed
    at start (logged, so a run can be replayed).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    """The only key the handshake accepts; left out of the repr so it never lands in a log."""
    rate: float = DEFAULT_RATE
    depth_rate: float | None = None
    kline_rate: float | None = None
    max_pushes: int | None = None
    max_depth_pushes: int | None = None
    max_kline_pushes: int | None = None
    record_sent: Path | None = None
    seed: int | None = None
    tick_seconds: float = DEFAULT_TICK_SECONDS
    backlog: int | None = None
    """Pushes owed to one connection before further ones are skipped (a slow client);
    ``None`` sizes it so a client that keeps up never loses a push (:attr:`backlog_limit`)."""
    close_timeout: float = 2.0
    """Seconds a client gets to answer the closing handshake at shutdown."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {self.port}")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        for name, rate in (
            ("rate", self.rate),
            ("depth_rate", self.depth_rate),
            ("kline_rate", self.kline_rate),
        ):
            if rate is not None and not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {rate}")
        for name, limit in (
            ("max_pushes", self.max_pushes),
            ("max_depth_pushes", self.max_depth_pushes),
            ("max_kline_pushes", self.max_kline_pushes),
        ):
            if limit is not None and limit < 0:
                raise ValueError(f"{name} must be >= 0, not {limit}")
        if not self.tick_seconds > 0 or not self.close_timeout > 0:
            raise ValueError("tick_seconds and close_timeout must be > 0")
        if self.backlog is not None and self.backlog < 1:
            raise ValueError(f"backlog must be >= 1, not {self.backlog}")

    def rate_of(self, stream: Stream) -> float:
        """The push rate of ``stream`` with the defaults applied."""
        if stream is Stream.TRADE:
            return self.rate
        if stream is Stream.DEPTH:
            return self.rate if self.depth_rate is None else self.depth_rate
        return max(1.0, self.rate / 10) if self.kline_rate is None else self.kline_rate

    @property
    def backlog_limit(self) -> int:
        """The backlog in force: as given, or twice the largest burst the pacer can hand out.

        One pacer pass can owe a single connection up to ``_MAX_CREDIT_SECONDS`` of every
        stream; a smaller backlog would skip pushes to a client that reads as fast as it can.
        """
        if self.backlog is not None:
            return self.backlog
        burst = sum(self.rate_of(stream) for stream in Stream) * _MAX_CREDIT_SECONDS
        return max(MIN_BACKLOG, math.ceil(2 * burst))

    def limit_of(self, stream: Stream) -> int | None:
        """The total push limit of ``stream``, or ``None``."""
        if stream is Stream.TRADE:
            return self.max_pushes
        if stream is Stream.DEPTH:
            return self.max_depth_pushes
        return self.max_kline_pushes


@dataclass(slots=True)
class SimulatorStats:
    """Live counters; the server updates them, callers only read."""

    connections: int = 0
    """Connections open now."""
    connections_total: int = 0
    handshakes_refused: int = 0
    frames_received: int = 0
    """Client frames, all connections, valid or not."""
    pushes_sent: dict[Stream, int] = field(default_factory=lambda: dict.fromkeys(Stream, 0))
    pushes_skipped: int = 0
    """Pushes due to a client whose backlog was full (it did not read fast enough)."""

    @property
    def trades_sent(self) -> int:
        """Trade pushes written to sockets."""
        return self.pushes_sent[Stream.TRADE]

    @property
    def depth_sent(self) -> int:
        """Depth pushes written to sockets."""
        return self.pushes_sent[Stream.DEPTH]

    @property
    def klines_sent(self) -> int:
        """Kline pushes written to sockets."""
        return self.pushes_sent[Stream.KLINE]


class _Due(NamedTuple):
    """A push owed: which stream, which code and, for klines, which interval."""

    stream: Stream
    code: str
    interval: KlineInterval | None = None


class _Client:
    """One open connection: its socket, its public info, and what its sender owes it."""

    def __init__(self, info: ClientInfo, ws: ServerConnection) -> None:
        self.info = info
        self.ws = ws
        self.backlog: deque[_Due] = deque()
        # Control replies are few (one per client frame) but still bounded: when full, the
        # reader waits for room, which stops reading the socket and pushes back on the client.
        self.control: deque[str] = deque()
        self.control_room = asyncio.Event()
        self.wake = asyncio.Event()


class _Lane:
    """The pacing state of one stream: rate, credit, limit, and the round-robin cursor."""

    def __init__(self, stream: Stream, rate: float, limit: int | None) -> None:
        self.stream = stream
        self.rate = rate
        self.limit = limit
        self.credit = 0.0
        self.reserved = 0
        self.cursor = 0
        self.pairs: list[tuple[_Client, _Due]] = []
        self.version = -1


class _Recorder:
    """Appends one JSON line per push sent: ``{"business": ..., "frame": <exact text>}``."""

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("ab")
        self._dirty = False

    def write(self, business: str, frame: str) -> None:
        self._file.write(orjson.dumps({"business": business, "frame": frame}) + b"\n")
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self._file.flush()
            self._dirty = False

    def close(self) -> None:
        self.flush()
        self._file.close()


# websockets logs the request line, query string and all, at DEBUG: its logger is ours, filtered,
# and quiet below WARNING unless someone lowers it to watch the handshakes.
_WIRE_LOGGER = logging.getLogger("bridge.simulator.websockets")
_WIRE_LOGGER.addFilter(RedactingFilter())
_WIRE_LOGGER.setLevel(logging.WARNING)


def now_millis() -> int:
    """The current Unix time in milliseconds, as the vendor stamps pushes."""
    return time.time_ns() // 1_000_000


class Simulator:
    """The vendor's WebSocket feed on a local port.

    Use as an async context manager::

        async with Simulator(SimulatorOptions(port=0, rate=2000)) as sim:
            ...  # connect to f"{sim.url}?business=crypto&apikey=demo-key"

    :meth:`stop` closes every connection (code 1001), cancels and awaits every task, and
    flushes the record file; it is idempotent and bounded by ``close_timeout``.
    """

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.stats = SimulatorStats()
        self.seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
        self._lanes = {stream: _Lane(stream, options.rate_of(stream), options.limit_of(stream)) for stream in Stream}
        self._backlog_limit = options.backlog_limit
        self._markets: dict[str, Market] = {}
        self._clients: dict[int, _Client] = {}
        self._version = 0
        self._next_id = 1
        self._server: Server | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._recorder: _Recorder | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        """The port listened on (the real one when ``port=0`` was asked)."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/ws``, without query: clients add ``?business=..&apikey=..``."""
        host = self.options.host
        return f"ws://{f'[{host}]' if ':' in host else host}:{self.port}{WS_PATH}"

    @property
    def clients(self) -> tuple[ClientInfo, ...]:
        """The connections open now, oldest first."""
        return tuple(client.info for client in self._clients.values())

    async def start(self) -> None:
        """Listen and start pacing; once ``start`` returns, :attr:`port` and :attr:`url` are valid.

        Raises:
            OSError: the address cannot be bound, or the record file cannot be opened.
            RuntimeError: the simulator was started before.
        """
        if self._server is not None or self._stopped:
            raise RuntimeError("a simulator starts once")
        if self.options.record_sent is not None:
            self._recorder = _Recorder(self.options.record_sent)
        try:
            self._server = await serve(
                self._handle,
                self.options.host,
                self.options.port,
                process_request=self._check_handshake,
                # Production pushes are small and the CPU is better spent on rate than on deflate.
                compression=None,
                close_timeout=self.options.close_timeout,
                logger=_WIRE_LOGGER,
            )
        except BaseException:
            if self._recorder is not None:
                self._recorder.close()
            raise
        self._pacer = asyncio.create_task(self._pace(), name="simulator-pacer")
        rates = ", ".join(f"{lane.stream}={lane.rate:g}/s" for lane in self._lanes.values())
        logger.info(
            "simulator listening on %s (connect with ?business=<%s>&apikey=<the accepted key>; %s; seed=%d)",
            self.url,
            "|".join(BUSINESSES),
            rates,
            self.seed,
        )

    async def stop(self) -> None:
        """Stop the pacer, close connections (1001), then flush and close the record file.

        Idempotent, and bounded: a client that does not answer the closing handshake is cut
        after ``close_timeout``. Cancelling it midway leaves connections to the server's own
        close and the record file unflushed, so await it to the end.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
        if self._server is not None:
            self._server.close()
            # Handlers return once their socket closes; close_timeout bounds a silent client.
            try:
                async with asyncio.timeout(self.options.close_timeout + 1):
                    await self._server.wait_closed()
            except TimeoutError:
                logger.warning("simulator: some connections did not close in time")
        if self._recorder is not None:
            self._recorder.close()
        logger.info(
            "simulator stopped: sent %s",
            " ".join(f"{stream}={count}" for stream, count in self.stats.pushes_sent.items()),
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- handshake ---------------------------------------------------------------------------

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != WS_PATH:
            return self._refuse(connection, request, http.HTTPStatus.NOT_FOUND, "Not Found")
        offered = _first(parse_qs(parts.query), "apikey")
        if offered is None or not hmac.compare_digest(offered.encode(), self.options.api_key.encode()):
            return self._refuse(connection, request, http.HTTPStatus.UNAUTHORIZED, INVALID_KEY_BODY)
        return None

    def _refuse(self, connection: ServerConnection, request: Request, status: http.HTTPStatus, body: str) -> Response:
        self.stats.handshakes_refused += 1
        logger.info("handshake refused with %d: %s", status, redact(request.path))
        response = connection.respond(status, body)
        if body.startswith("{"):
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
        return response

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes; cancelling it closes nothing but its tasks."""
        assert ws.request is not None  # set by the handshake, which has succeeded
        business = _first(parse_qs(urlsplit(ws.request.path).query), "business") or ""
        info = ClientInfo(self._next_id, business, datetime.now(UTC))
        self._next_id += 1
        client = _Client(info, ws)
        self._clients[info.id] = client
        self._version += 1
        self.stats.connections += 1
        self.stats.connections_total += 1
        logger.info("connection %d open: business=%s codes=0", info.id, business or "<none>")
        try:
            if business == "stock":
                await ws.send(GREETING)
            await ws.send(WELCOME)
            await self._serve(client)
        except ConnectionClosed:
            pass
        finally:
            del self._clients[info.id]
            self._version += 1
            self.stats.connections -= 1
            for due in client.backlog:
                self._lanes[due.stream].reserved -= 1
            client.backlog.clear()
            logger.info(
                "connection %d closed: business=%s codes=%d frames_received=%d close_code=%s",
                info.id,
                business or "<none>",
                len(info.codes),
                info.frames_received,
                ws.close_code,
            )

    async def _serve(self, client: _Client) -> None:
        reader = asyncio.create_task(self._read(client), name=f"simulator-reader-{client.info.id}")
        sender = asyncio.create_task(self._send(client), name=f"simulator-sender-{client.info.id}")
        try:
            await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, sender):
                task.cancel()
            results = await asyncio.gather(reader, sender, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                raise result

    async def _read(self, client: _Client) -> None:
        """Answer every client frame until the socket closes; safe to cancel."""
        async for message in client.ws:
            while len(client.control) >= _CONTROL_LIMIT:
                client.control_room.clear()
                await client.control_room.wait()
            # Applying the frame and queueing its reply happen with no await in between, so an
            # ack always leaves before the first push of what it acknowledges.
            self.stats.frames_received += 1
            reply = answer(client.info, message, received_at=datetime.now(UTC), monotonic=time.monotonic())
            # Any frame may have changed subscriptions: the pacer rebuilds its pairs lazily.
            self._version += 1
            if reply is not None:
                client.control.append(reply)
                client.wake.set()

    async def _send(self, client: _Client) -> None:
        """The only writer of the socket: control replies first, then pushes owed.

        Safe to cancel between sends; a push is counted (and recorded) only once the socket
        accepted it.
        """
        ws = client.ws
        info = client.info
        while True:
            await client.wake.wait()
            client.wake.clear()
            sends = 0
            while True:
                sends += 1
                if sends % _SENDS_PER_YIELD == 0:
                    await asyncio.sleep(0)
                if client.control:
                    reply = client.control.popleft()
                    client.control_room.set()
                    await ws.send(reply)
                    continue
                if not client.backlog:
                    break
                due = client.backlog.popleft()
                lane = self._lanes[due.stream]
                if not info.wants(due.stream, due.code, due.interval):
                    lane.reserved -= 1
                    continue
                frame = self._build(info.business, due)
                sent = False
                try:
                    await ws.send(frame)
                    sent = True
                finally:
                    if not sent:
                        lane.reserved -= 1
                self.stats.pushes_sent[due.stream] += 1
                if self._recorder is not None:
                    self._recorder.write(info.business, frame)

    def _build(self, business: str, due: _Due) -> str:
        market = self._markets.get(business)
        if market is None:
            market = self._markets[business] = Market(business, self.seed)
        now = now_millis()
        if due.stream is Stream.TRADE:
            return market.trade_frame(due.code, now)
        if due.stream is Stream.DEPTH:
            return market.depth_frame(due.code, now)
        assert due.interval is not None  # kline pairs always carry their interval
        return market.kline_frame(due.code, due.interval, now)

    # -- pacing ------------------------------------------------------------------------------

    async def _pace(self) -> None:
        """Turn rates into pushes owed, every tick, until cancelled; safe to cancel."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.options.tick_seconds)
            now = loop.time()
            elapsed, last = now - last, now
            for lane in self._lanes.values():
                self._allocate(lane, elapsed)
            if self._recorder is not None:
                self._recorder.flush()

    def _allocate(self, lane: _Lane, elapsed: float) -> None:
        if lane.rate <= 0:
            return
        if lane.version != self._version:
            lane.pairs = self._pairs(lane.stream)
            lane.version = self._version
        pairs = lane.pairs
        if not pairs:
            # Nobody to send to: owe nothing, so a later subscriber gets no burst.
            lane.credit = 0.0
            return
        lane.credit = min(lane.credit + lane.rate * elapsed, max(1.0, lane.rate * _MAX_CREDIT_SECONDS))
        due = int(lane.credit)
        lane.credit -= due
        backlog_limit = self._backlog_limit
        for _ in range(due):
            if lane.limit is not None and lane.reserved >= lane.limit:
                return
            client, push = pairs[lane.cursor % len(pairs)]
            lane.cursor += 1
            if len(client.backlog) >= backlog_limit:
                self.stats.pushes_skipped += 1
                continue
            client.backlog.append(push)
            lane.reserved += 1
            client.wake.set()

    def _pairs(self, stream: Stream) -> list[tuple[_Client, _Due]]:
        pairs: list[tuple[_Client, _Due]] = []
        for client in self._clients.values():
            info = client.info
            if not info.serves_data:
                continue
            if stream is Stream.TRADE:
                pairs.extend((client, _Due(stream, code)) for code in info.trades)
            elif stream is Stream.DEPTH:
                pairs.extend((client, _Due(stream, code)) for code in info.depth)
            else:
                pairs.extend((client, _Due(stream, code, interval)) for code, interval in info.klines)
        return pairs


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
