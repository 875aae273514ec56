"""A local server that speaks the vendor's WebSocket protocol, for demos, tests and benchmarks.

Theory of operation
-------------------
The handshake is checked in ``process_request``: a wrong path is refused with 404 and a wrong or
missing key with 401 and the vendor's JSON body, before any WebSocket frame (protocol page,
"Endpoint and authentication"; the responses are built in :mod:`~bridge.simulator.http_answers`).
An accepted connection gets the welcome frame (after the plain text greeting on
``business=stock``) and is then served by a :class:`~bridge.simulator.connection.ServedConnection`,
whose reader answers client frames and whose sender is the only writer of the socket.
Plain HTTP on the same port reaches ``process_request`` too: ``GET /sim/stats`` answers the JSON of
:meth:`Simulator.snapshot` (no key needed; the vendor has no such endpoint).

One *pacer* task per server (:mod:`~bridge.simulator.pacing`) turns the configured rates into
pushes owed: every tick (10 ms) it passes the time elapsed to one
:class:`~bridge.simulator.pacer.StreamPacer` per stream, which
hands the whole pushes due round-robin to the subscribed (connection, code) pairs (for klines,
(connection, code, interval)) and skips a slow client whose bounded backlog is full. The sender
writes its backlog in batches and waits for the transport to drain, so the transport's write
buffer is the other bound.

A connection on a business without data (any value outside
:data:`~bridge.simulator.market.BUSINESSES`) is acked and then stays silent, like the vendor.

``max_pushes`` counts pushes *reserved* (owed or sent) so the total sent stops at exactly N;
the sender releases a reservation when the push cannot go (its code was unsubscribed or the
socket closed first), so another connection can still receive it.

Gateway limits and fault modes
------------------------------
What the vendor's gateway decides, and the faults a test can ask for, live in the pure
:class:`~bridge.simulator.gateway.Gateway`; the server and its connections only carry its
verdicts out, so every fault keeps the one-writer rule:

* the frame budget (``frame_limit`` frames per ``frame_window``, on by default at production's
  60 per minute), the code cap (``max_codes_per_connection``, 600 by default) and the
  Nth-subscribe faults (``fail_subscribe_nth``: 501 and a cut; ``subscribe_fail_505_nth``: the
  prefixed 505) come back to the reader as a reply and, for a cut, a close directive queued
  behind it. The sender sends the reply and then closes normally (1000), and the pacer owes a
  cut connection nothing;
* the pacer, every tick, asks whether a connection's heartbeat is overdue
  (``heartbeat_timeout``, from the handshake and then from the last 10010) and queues 513 and a
  close the same way;
* the sender, after every push, asks what follows it: a bad frame every ``garbage_every``
  pushes (recorded with its kind, not counted against ``max_pushes``) and, after
  ``close_after_pushes``, an abrupt close with no close frame, like a network reset.
  :meth:`Simulator.drop_connections` aborts every connection the same way, at once;
* the handshake check refuses the first ``refuse_handshakes`` handshakes that carry the right key
  with ``refuse_handshake_status`` (the vendor's JSON body for 401 and 429), then accepts.

Every client frame, even after a cut, also counts in the key's rolling window, whose peak is
``stats.max_frames_in_window_per_key``.

REST and the market clock
-------------------------
With ``rest_port`` set, a second port serves the vendor's REST API from the same markets
(:mod:`~bridge.simulator.rest`, :mod:`~bridge.simulator.rest_server`), and :meth:`Simulator.go_offline`
drops every connection and refuses handshakes (503) for a while, so a client has a gap to backfill.
Market time runs at ``time_scale`` (one 1m bar per real second at 60), and every kline pair that
was ever subscribed keeps trading while nobody is subscribed to it, so the bars of a gap exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import logging
import random
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.redact import RedactingFilter, redact
from bridge.simulator import http_answers
from bridge.simulator.connection import ServedConnection, ServerState
from bridge.simulator.market import BUSINESSES
from bridge.simulator.options import SimulatorOptions, SimulatorStats
from bridge.simulator.pacing import PacingLoop
from bridge.simulator.recorder import SentRecorder
from bridge.simulator.replies import GREETING, WELCOME, ClientInfo
from bridge.simulator.rest import RestApi
from bridge.simulator.rest_server import RestServer

logger = logging.getLogger("bridge.simulator")

# websockets logs the request line, query string and all, at DEBUG: its logger is ours, filtered,
# and quiet below WARNING unless someone lowers it to watch the handshakes.
_WIRE_LOGGER = logging.getLogger("bridge.simulator.websockets")
_WIRE_LOGGER.addFilter(RedactingFilter())
_WIRE_LOGGER.setLevel(logging.WARNING)


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
        self.seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
        self._state = ServerState(options, self.seed)
        self.stats: SimulatorStats = self._state.stats
        self._connections: dict[int, ServedConnection] = {}
        self._pacing = PacingLoop(options, self._state, self._connections)
        self._next_id = 1
        self._server: Server | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._stopped = False
        self._rest: RestServer | None = None
        self._rest_port: int | None = None
        self._offline_until = 0.0

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
        return f"ws://{f'[{host}]' if ':' in host else host}:{self.port}{http_answers.WS_PATH}"

    @property
    def rest_url(self) -> str:
        """``http://HOST:REST_PORT``, the base of the REST API (``source.rest_url``)."""
        if self._rest_port is None:
            raise RuntimeError("the simulator serves no REST (rest_port is None) or is not started")
        host = self.options.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._rest_port}"

    @property
    def rest(self) -> RestApi:
        """The REST side (its fault mode, its stats)."""
        if self._rest is None:
            raise RuntimeError("the simulator serves no REST (rest_port is None) or is not started")
        return self._rest.api

    def market_now(self) -> datetime:
        """The market clock (UTC): the wall clock, or at ``time_scale`` from the start."""
        return datetime.fromtimestamp(self._state.now_ms() / 1000, UTC)

    async def go_offline(self, seconds: float) -> int:
        """Drop every connection and refuse handshakes with 503 for ``seconds``; returns how many were dropped."""
        self._offline_until = time.monotonic() + seconds
        logger.info("offline for %.1fs: handshakes are refused with 503", seconds)
        return await self.drop_connections()

    @property
    def clients(self) -> tuple[ClientInfo, ...]:
        """The connections open now, oldest first."""
        return tuple(connection.info for connection in self._connections.values())

    async def start(self) -> None:
        """Listen and start pacing; once ``start`` returns, :attr:`port` and :attr:`url` are valid.

        Raises:
            OSError: the address cannot be bound, or the record file cannot be opened.
            RuntimeError: the simulator was started before.
        """
        if self._server is not None or self._stopped:
            raise RuntimeError("a simulator starts once")
        state = self._state
        if self.options.record_sent is not None:
            state.recorder = SentRecorder(self.options.record_sent)
        try:
            self._server = await serve(
                self._handle,
                self.options.host,
                self.options.port,
                process_request=self._process_request,
                # Production pushes are small and the CPU is better spent on rate than on deflate.
                compression=None,
                close_timeout=self.options.close_timeout,
                logger=_WIRE_LOGGER,
            )
        except BaseException:
            if state.recorder is not None:
                state.recorder.close()
            raise
        rest_port = self.options.rest_port
        if rest_port is not None:
            options = self.options
            api = RestApi(
                options.api_key,
                state.market,
                rate=options.rest_rate,
                history_seconds=options.rest_history_seconds,
                fault=options.rest_fault,
            )
            self._rest = RestServer(api, lambda: state.now_ms() // 1000, self.go_offline)
            self._rest_port = await self._rest.start(options.host, rest_port)
            logger.info("simulator REST API on %s (key in the apiKey header)", self.rest_url)
        self._pacer = asyncio.create_task(self._pacing.run(), name="simulator-pacer")
        rates = ", ".join(f"{pacer.stream}={pacer.rate:g}/s" for pacer in state.pacers.values())
        logger.info(
            # Worded with no "apikey=": the log scrubber masks whatever follows that.
            "simulator listening on %s (clients add the query parameters business, one of %s, and apikey, "
            "the key given to the simulator; %s; seed=%d)",
            self.url,
            "/".join(BUSINESSES),
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
        if self._rest is not None:
            await self._rest.close()
        if self._state.recorder is not None:
            self._state.recorder.close()
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
        dropped = [connection for connection in self._connections.values() if not connection.aborted]
        for connection in dropped:
            connection.abort()
        if dropped:
            self._state.version += 1
            logger.info("dropped %d connections without a close frame", len(dropped))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.close_timeout):
                    for connection in dropped:
                        await connection.done.wait()
        return len(dropped)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- handshake ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /sim/stats`` answers: the open connections, their subscriptions and pushes, and the totals."""
        return http_answers.stats_document(
            self.stats, ((connection.info, connection.pushes_sent) for connection in self._connections.values())
        )

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer a plain HTTP request, or check a handshake (``None`` lets it proceed)."""
        path = http_answers.path_of(request.path)
        if path == http_answers.STATS_PATH:
            if request.method != "GET":
                return http_answers.response(http.HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed")
            return http_answers.response(http.HTTPStatus.OK, orjson.dumps(self.snapshot()))
        if path != http_answers.WS_PATH:
            return self._refuse(request, http.HTTPStatus.NOT_FOUND, "Not Found")
        if time.monotonic() < self._offline_until:
            return self._refuse(request, http.HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable")
        offered = http_answers.query_value(request.path, "apikey")
        if offered is None or not hmac.compare_digest(offered.encode(), self.options.api_key.encode()):
            return self._refuse(request, http.HTTPStatus.UNAUTHORIZED, http_answers.INVALID_KEY_BODY)
        status = self._state.gateway.refusal()
        if status is not None:
            return self._refuse(request, status, http_answers.refusal_body(status))
        return None

    def _refuse(self, request: Request, status: int, body: str) -> Response:
        self.stats.handshakes_refused += 1
        logger.info("handshake refused with %d: %s", status, redact(request.path))
        return http_answers.response(status, body)

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes; cancelling it closes nothing but its tasks."""
        assert ws.request is not None  # set by the handshake, which has succeeded
        state = self._state
        business = http_answers.query_value(ws.request.path, "business") or ""
        info = ClientInfo(self._next_id, business, datetime.now(UTC))
        self._next_id += 1
        connection = ServedConnection(state.gateway.open(info, time.monotonic()), ws, state)
        self._connections[info.id] = connection
        state.version += 1
        self.stats.connections += 1
        self.stats.connections_total += 1
        logger.info("connection %d open: business=%s codes=0", info.id, business or "<none>")
        try:
            if business == "stock":
                await ws.send(GREETING)
            await ws.send(WELCOME)
            await connection.serve()
        except ConnectionClosed:
            pass
        finally:
            del self._connections[info.id]
            state.version += 1
            self.stats.connections -= 1
            connection.release_backlog()
            connection.done.set()
            if self._stopped and ws.protocol.close_rcvd is None:
                self.stats.cut_at_stop += 1
                logger.warning(
                    "simulator: connection %d did not answer the closing handshake within close_timeout (%gs) and "
                    "was cut; pushes still on their way to it are lost, though recorded as sent",
                    info.id, self.options.close_timeout,
                )  # fmt: skip
            logger.info(
                "connection %d closed: business=%s codes=%d frames_received=%d close_code=%s",
                info.id,
                business or "<none>",
                len(info.codes),
                info.frames_received,
                ws.close_code,
            )
