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

Gateway limits and fault modes
------------------------------
What the vendor's gateway decides, and the faults a test can ask for, live in the pure
:class:`~bridge.simulator.gateway.Gateway`; this module only carries its verdicts out, so
every fault keeps the one-writer rule:

* the reader passes each client frame to the gateway with the monotonic time of receipt. The
  frame budget (``frame_limit`` frames per ``frame_window``, on by default at production's 60
  per minute), the code cap (``max_codes_per_connection``, 600 by default) and the Nth-subscribe
  faults (``fail_subscribe_nth``: 501 and a cut; ``subscribe_fail_505_nth``: the prefixed 505)
  come back as a reply and, for a cut, a close directive queued behind it. The sender sends the
  reply and then closes normally (1000); from the cut on, the reader still reads (so the
  closing handshake completes) but answers nothing and the pacer owes the connection nothing;
* the pacer, every tick, asks whether a connection's heartbeat is overdue
  (``heartbeat_timeout``, from the handshake and then from the last 10010) and queues 513 and a
  close the same way;
* the sender, after every push, asks what follows it: a bad frame every ``garbage_every``
  pushes (recorded with its kind, not counted against ``max_pushes``) and, after
  ``close_after_pushes``, an abrupt close: once the transport's buffer has drained, so the N
  pushes are on the wire, the transport is aborted with no close frame, like a network reset.
  :meth:`Simulator.drop_connections` aborts every connection the same way, at once;
* the handshake check refuses the first ``refuse_handshakes`` handshakes that carry the right key
  with ``refuse_handshake_status`` (the vendor's JSON body for 401 and 429), then accepts.

Every client frame, even after a cut, also counts in the key's rolling window, whose peak is
``stats.max_frames_in_window_per_key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
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
from bridge.simulator.gateway import (
    DEFAULT_FRAME_LIMIT,
    DEFAULT_FRAME_WINDOW,
    DEFAULT_MAX_CODES,
    GarbageKind,
    Gateway,
    GatewayRules,
    Line,
    garbage_frame,
)
from bridge.simulator.market import BUSINESSES, Market
from bridge.simulator.session import GREETING, WELCOME, ClientInfo

logger = logging.getLogger("bridge.simulator")

WS_PATH = "/ws"
INVALID_KEY_BODY = '{"message":"Invalid API key in request"}'
"""The body of the 401 that refuses a key (protocol page, "Endpoint and authentication")."""
TOO_MANY_REQUESTS_BODY = '{"message":"Too many requests"}'
"""The body of a 429 (plan quota) refusal."""
_REFUSAL_BODIES = {401: INVALID_KEY_BODY, 429: TOO_MANY_REQUESTS_BODY}
# Proxy statuses the protocol page names that Python's HTTPStatus does not know.
_PROXY_PHRASES = {
    499: "Client Closed Request",
    520: "Web Server Returned an Unknown Error",
    521: "Web Server Is Down",
    522: "Connection Timed Out",
    523: "Origin Is Unreachable",
    524: "A Timeout Occurred",
}

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
    close_after_pushes: int | None = None
    """Abort each connection (no close frame) once it has been sent this many pushes."""
    heartbeat_timeout: float | None = None
    """Seconds without a heartbeat (from the handshake, then from the last one) before 513 and a close."""
    fail_subscribe_nth: int | None = None
    """The Nth subscribe over the server's life gets 501 and a cut connection."""
    refuse_handshake_status: int | None = None
    """Refuse handshakes that carry the right key with this HTTP status (400..599)."""
    refuse_handshakes: int | None = None
    """How many handshakes ``refuse_handshake_status`` refuses; ``None``: every one."""
    subscribe_fail_505_nth: int | None = None
    """The Nth subscribe over the server's life gets the prefixed 505 and adds nothing."""
    garbage_every: int | None = None
    """Send one bad frame after every N pushes of a connection, kinds in turn."""
    frame_limit: int = DEFAULT_FRAME_LIMIT
    """Client frames one connection may send in ``frame_window``; more gets 501 and a cut. 0: no limit."""
    frame_window: float = DEFAULT_FRAME_WINDOW
    """Seconds of the rolling frame window, enforced or only measured per key."""
    max_codes_per_connection: int = DEFAULT_MAX_CODES
    """Distinct codes one connection may hold over all streams; a subscribe past it gets 505. 0: no cap."""

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
        self._check_faults()

    def _check_faults(self) -> None:
        for name, count in (
            ("close_after_pushes", self.close_after_pushes),
            ("fail_subscribe_nth", self.fail_subscribe_nth),
            ("refuse_handshakes", self.refuse_handshakes),
            ("subscribe_fail_505_nth", self.subscribe_fail_505_nth),
            ("garbage_every", self.garbage_every),
        ):
            if count is not None and count < 1:
                raise ValueError(f"{name} must be >= 1, not {count}")
        for name, limit in (
            ("frame_limit", self.frame_limit),
            ("max_codes_per_connection", self.max_codes_per_connection),
        ):
            if limit < 0:
                raise ValueError(f"{name} must be >= 0, not {limit}")
        for name, seconds in (("heartbeat_timeout", self.heartbeat_timeout), ("frame_window", self.frame_window)):
            if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{name} must be a finite number > 0, not {seconds}")
        status = self.refuse_handshake_status
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"refuse_handshake_status must be an HTTP error status 400..599, not {status}")
        if self.refuse_handshakes is not None and status is None:
            raise ValueError("refuse_handshakes must come with refuse_handshake_status")
        if self.fail_subscribe_nth is not None and self.fail_subscribe_nth == self.subscribe_fail_505_nth:
            raise ValueError("fail_subscribe_nth and subscribe_fail_505_nth must name different subscribes")

    @property
    def rules(self) -> GatewayRules:
        """The gateway limits and fault modes of these options."""
        return GatewayRules(
            frame_limit=self.frame_limit,
            frame_window=self.frame_window,
            max_codes=self.max_codes_per_connection,
            heartbeat_timeout=self.heartbeat_timeout,
            fail_subscribe_nth=self.fail_subscribe_nth,
            subscribe_fail_505_nth=self.subscribe_fail_505_nth,
            close_after_pushes=self.close_after_pushes,
            garbage_every=self.garbage_every,
        )

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
    garbage_sent: int = 0
    """Bad frames sent by ``garbage_every`` (not counted in :attr:`pushes_sent`)."""
    budget_violations: int = 0
    """Client frames over the frame budget (each answered 501 and its connection cut)."""
    max_frames_in_window_per_key: int = 0
    """The most client frames of the key, over all its connections, in any rolling ``frame_window``."""
    heartbeat_timeouts: int = 0
    """Connections cut with 513 by ``heartbeat_timeout``."""
    connections_aborted: int = 0
    """Connections aborted without a close frame (``close_after_pushes``, :meth:`Simulator.drop_connections`)."""

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


class _Close(enum.Enum):
    """A directive in a connection's control queue: close (1000) once the replies before it are sent."""

    NORMAL = "normal"


class _Client:
    """One open connection: its socket, its public info, and what its sender owes it."""

    def __init__(self, line: Line, ws: ServerConnection) -> None:
        self.line = line
        self.info = line.info
        self.ws = ws
        self.backlog: deque[_Due] = deque()
        # Control replies are few (one per client frame) but still bounded: when full, the
        # reader waits for room, which stops reading the socket and pushes back on the client.
        self.control: deque[str | _Close] = deque()
        self.control_room = asyncio.Event()
        self.wake = asyncio.Event()
        self.aborted = False
        self.done = asyncio.Event()
        """Set once the connection's handler has cleaned up."""

    def cut(self, *frames: str) -> None:
        """Queue ``frames`` and then a normal close; the gateway has marked the line cut."""
        self.control.extend(frames)
        self.control.append(_Close.NORMAL)
        self.wake.set()


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
    """Appends one JSON line per push sent: ``{"business": ..., "frame": <exact text>}``.

    A bad frame of ``garbage_every`` adds ``"garbage": <kind>``, and a binary one is written as
    its bytes read as latin-1 text.
    """

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("ab")
        self._dirty = False

    def write(self, business: str, frame: str) -> None:
        self._file.write(orjson.dumps({"business": business, "frame": frame}) + b"\n")
        self._dirty = True

    def write_garbage(self, business: str, frame: str | bytes, kind: GarbageKind) -> None:
        text = frame.decode("latin-1") if isinstance(frame, bytes) else frame
        self._file.write(orjson.dumps({"business": business, "frame": text, "garbage": kind}) + b"\n")
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
    flushes the record file; it is idempotent and bounded by ``close_timeout``. The fault modes
    of :class:`SimulatorOptions` apply from the start; :meth:`drop_connections` is the one fault
    a test triggers by hand.
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
        self._gateway = Gateway(options.rules)
        self._faulty_refusals = 0

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

    async def drop_connections(self) -> int:
        """Abort every open connection without a close frame, like a network reset.

        Pushes still in a socket's buffers are lost, as they would be. Returns once the dropped
        connections are cleaned up (:attr:`clients` no longer lists them), or after
        ``close_timeout`` at worst; safe to cancel.

        Returns:
            How many connections were dropped.
        """
        dropped = [client for client in self._clients.values() if not client.aborted]
        for client in dropped:
            self._abort(client)
        if dropped:
            self._version += 1
            logger.info("dropped %d connections without a close frame", len(dropped))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.close_timeout):
                    for client in dropped:
                        await client.done.wait()
        return len(dropped)

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
        status, budget = self.options.refuse_handshake_status, self.options.refuse_handshakes
        if status is not None and (budget is None or self._faulty_refusals < budget):
            self._faulty_refusals += 1
            return self._refuse(connection, request, status, _REFUSAL_BODIES.get(status, _phrase(status)))
        return None

    def _refuse(self, connection: ServerConnection, request: Request, status: int, body: str) -> Response:
        self.stats.handshakes_refused += 1
        logger.info("handshake refused with %d: %s", status, redact(request.path))
        # websockets only builds responses for statuses Python knows: proxy ones are patched in.
        response = connection.respond(http.HTTPStatus.INTERNAL_SERVER_ERROR, body)
        response = dataclasses.replace(response, status_code=status, reason_phrase=_phrase(status))
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
        client = _Client(self._gateway.open(info, time.monotonic()), ws)
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
            client.done.set()
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
        """Answer every client frame until the socket closes; safe to cancel.

        After the gateway cuts the connection it goes on reading, so the closing handshake can
        complete, but answers nothing.
        """
        info = client.info
        async for message in client.ws:
            while len(client.control) >= _CONTROL_LIMIT:
                client.control_room.clear()
                await client.control_room.wait()
            # Applying the frame and queueing its reply happen with no await in between, so an
            # ack always leaves before the first push of what it acknowledges.
            self.stats.frames_received += 1
            verdict = self._gateway.receive(client.line, message, received_at=datetime.now(UTC), now=time.monotonic())
            self.stats.max_frames_in_window_per_key = self._gateway.key_frames.peak
            # Any frame may have changed subscriptions: the pacer rebuilds its pairs lazily.
            self._version += 1
            if verdict.fault == "budget":
                self.stats.budget_violations += 1
            if verdict.fault is not None:
                logger.info("connection %d: %s fault, answered %s", info.id, verdict.fault, verdict.reply)
            if verdict.close:
                client.cut(*(() if verdict.reply is None else (verdict.reply,)))
            elif verdict.reply is not None:
                client.control.append(verdict.reply)
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
                    if reply is _Close.NORMAL:
                        await ws.close()
                        return
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
                after = self._gateway.pushed(client.line, due.stream, due.code)
                if after.garbage is not None:
                    bad = garbage_frame(after.garbage, after.symbol, now_millis())
                    await ws.send(bad)
                    self.stats.garbage_sent += 1
                    if self._recorder is not None:
                        self._recorder.write_garbage(info.business, bad, after.garbage)
                if after.abort:
                    self._version += 1
                    await self._drain(ws)
                    self._abort(client)
                    return

    async def _drain(self, ws: ServerConnection) -> None:
        """Wait until the transport has handed every byte to the kernel, for ``close_timeout`` at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.close_timeout):
                while ws.transport.get_write_buffer_size() > 0:  # noqa: ASYNC110 - asyncio has no drained event
                    await asyncio.sleep(0.001)

    def _abort(self, client: _Client) -> None:
        """Cut the TCP connection with no close frame; the handler then cleans up. Idempotent."""
        if client.aborted:
            return
        client.aborted = True
        client.line.cut = True
        self.stats.connections_aborted += 1
        client.ws.transport.abort()

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
            if self.options.heartbeat_timeout is not None:
                self._check_heartbeats(time.monotonic())
            if self._recorder is not None:
                self._recorder.flush()

    def _check_heartbeats(self, now: float) -> None:
        for client in self._clients.values():
            frame = self._gateway.overdue(client.line, now)
            if frame is not None:
                self.stats.heartbeat_timeouts += 1
                self._version += 1
                logger.info("connection %d: heartbeat timeout, answered 513 and closing", client.info.id)
                client.cut(frame)

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
            if not info.serves_data or client.line.cut:
                continue
            if stream is Stream.TRADE:
                pairs.extend((client, _Due(stream, code)) for code in info.trades)
            elif stream is Stream.DEPTH:
                pairs.extend((client, _Due(stream, code)) for code in info.depth)
            else:
                pairs.extend((client, _Due(stream, code, interval)) for code, interval in info.klines)
        return pairs


def _phrase(status: int) -> str:
    """The reason phrase of an HTTP status, proxy statuses included."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return _PROXY_PHRASES.get(status, "Error")


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
