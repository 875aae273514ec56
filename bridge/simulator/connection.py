"""One accepted WebSocket connection of the simulator: its reader, its sender, and their shared state.

Theory of operation
-------------------
Each connection runs two tasks, owned by :meth:`ServedConnection.serve`:

* the *reader* answers client frames: it passes each to the gateway with the monotonic time of
  receipt, and queues the verdict's reply (an ack, an error frame) and, for a cut, a close
  directive behind it. Applying a frame and queueing its reply happen with no await between,
  so an ack always leaves before the first push of what it acknowledges. From a cut on, the
  reader still reads (so the closing handshake completes) but answers nothing;
* the *sender*, the only task that writes to the socket, sends control replies first and then
  the pushes the pacer put in the connection's backlog, each built at send time so its
  timestamp is the real time of sending. A push is counted (and recorded) only once the socket
  accepted it; one whose code was unsubscribed meanwhile is dropped and its reservation
  released. After every push it asks the gateway what follows: a bad frame of ``garbage_every``
  and, after ``close_after_pushes``, an abort once the transport has drained, so the N pushes
  are on the wire.

Control replies are few (one per client frame) but still bounded: when the queue is full the
reader waits for room, which stops reading the socket and pushes back on the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bridge.records import Stream
from bridge.simulator.gateway import Gateway, Line, garbage_frame
from bridge.simulator.market import Market
from bridge.simulator.options import SimulatorOptions, SimulatorStats
from bridge.simulator.pacer import Due, StreamPacer
from bridge.simulator.recorder import SentRecorder

logger = logging.getLogger("bridge.simulator")

# Yield to the loop after this many sends in a row: a send that does not fill the write buffer
# never yields, and one busy connection must not starve the pacer and the other connections.
_SENDS_PER_YIELD: Final = 64
# Replies owed to one client before its reader stops reading (and so stops the client).
_CONTROL_LIMIT: Final = 64


def now_millis() -> int:
    """The current Unix time in milliseconds, as the vendor stamps pushes."""
    return time.time_ns() // 1_000_000


class ServerState:
    """What every connection of one server shares: options, counters, gateway, pacers, markets, record.

    ``version`` moves whenever any connection's subscriptions may have changed (or a connection
    opened, closed or was cut), so the pacer knows to rebuild its pairs.
    """

    def __init__(self, options: SimulatorOptions, seed: int) -> None:
        self.options = options
        self.seed = seed
        self.stats = SimulatorStats()
        self.gateway = Gateway(options.rules)
        backlog_limit = options.backlog_limit
        self.pacers = {
            stream: StreamPacer(stream, options.rate_of(stream), options.limit_of(stream), backlog_limit)
            for stream in Stream
        }
        self.recorder: SentRecorder | None = None
        self.version = 0
        self._markets: dict[str, Market] = {}

    def market(self, business: str) -> Market:
        """The market of ``business``, shared by its connections, made on first use."""
        market = self._markets.get(business)
        if market is None:
            market = self._markets[business] = Market(business, self.seed)
        return market


class _Close(enum.Enum):
    """A directive in a connection's control queue: close (1000) once the replies before it are sent."""

    NORMAL = "normal"


class ServedConnection:
    """One open connection: its socket, the gateway's line for it, and what its sender owes it."""

    def __init__(self, line: Line, ws: ServerConnection, state: ServerState) -> None:
        self.line = line
        self.info = line.info
        self.ws = ws
        self.backlog: deque[Due] = deque()
        """Pushes the pacer handed to this connection and the sender has not sent yet."""
        self.pushes_sent = dict.fromkeys(Stream, 0)
        """Pushes written to this connection's socket, per stream."""
        self._state = state
        self._control: deque[str | _Close] = deque()
        self._control_room = asyncio.Event()
        self.wake = asyncio.Event()
        """Set when there is something to send."""
        self.aborted = False
        self.done = asyncio.Event()
        """Set once the connection's handler has cleaned up."""

    def cut(self, *frames: str) -> None:
        """Queue ``frames`` and then a normal close; the gateway has marked the line cut."""
        self._control.extend(frames)
        self._control.append(_Close.NORMAL)
        self.wake.set()

    def abort(self) -> None:
        """Cut the TCP connection with no close frame; the handler then cleans up. Idempotent."""
        if self.aborted:
            return
        self.aborted = True
        self.line.cut = True
        self._state.stats.connections_aborted += 1
        self.ws.transport.abort()

    def release_backlog(self) -> None:
        """Give back the reservations of every push still owed (the connection has closed)."""
        for due in self.backlog:
            self._state.pacers[due.stream].release()
        self.backlog.clear()

    async def serve(self) -> None:
        """Run the reader and the sender until either ends; cancelling it cancels and awaits both."""
        reader = asyncio.create_task(self._read(), name=f"simulator-reader-{self.info.id}")
        sender = asyncio.create_task(self._send(), name=f"simulator-sender-{self.info.id}")
        try:
            await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, sender):
                task.cancel()
            results = await asyncio.gather(reader, sender, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                raise result

    async def _read(self) -> None:
        """Answer every client frame until the socket closes; safe to cancel."""
        state, info = self._state, self.info
        async for message in self.ws:
            while len(self._control) >= _CONTROL_LIMIT:
                self._control_room.clear()
                await self._control_room.wait()
            state.stats.frames_received += 1
            verdict = state.gateway.receive(self.line, message, received_at=datetime.now(UTC), now=time.monotonic())
            state.stats.max_frames_in_window_per_key = state.gateway.key_frames.peak
            # Any frame may have changed subscriptions: the pacer rebuilds its pairs lazily.
            state.version += 1
            if verdict.fault == "budget":
                state.stats.budget_violations += 1
            if verdict.fault is not None:
                logger.info("connection %d: %s fault, answered %s", info.id, verdict.fault, verdict.reply)
            if verdict.close:
                self.cut(*(() if verdict.reply is None else (verdict.reply,)))
            elif verdict.reply is not None:
                self._control.append(verdict.reply)
                self.wake.set()

    async def _send(self) -> None:
        """The only writer of the socket: control replies first, then pushes owed; safe to cancel."""
        state, ws, info = self._state, self.ws, self.info
        recorder = state.recorder
        while True:
            await self.wake.wait()
            self.wake.clear()
            sends = 0
            while True:
                sends += 1
                if sends % _SENDS_PER_YIELD == 0:
                    await asyncio.sleep(0)
                if self._control:
                    reply = self._control.popleft()
                    self._control_room.set()
                    if reply is _Close.NORMAL:
                        await ws.close()
                        return
                    await ws.send(reply)
                    continue
                if not self.backlog:
                    break
                due = self.backlog.popleft()
                pacer = state.pacers[due.stream]
                if not info.wants(due.stream, due.code, due.interval):
                    pacer.release()
                    continue
                frame = self._build(due)
                sent = False
                try:
                    await ws.send(frame)
                    sent = True
                finally:
                    if not sent:
                        pacer.release()
                state.stats.pushes_sent[due.stream] += 1
                self.pushes_sent[due.stream] += 1
                if recorder is not None:
                    recorder.write(info.business, frame)
                after = state.gateway.pushed(self.line, due.stream, due.code)
                if after.garbage is not None:
                    bad = garbage_frame(after.garbage, after.symbol, now_millis())
                    await ws.send(bad)
                    state.stats.garbage_sent += 1
                    if recorder is not None:
                        recorder.write_garbage(info.business, bad, after.garbage)
                if after.abort:
                    state.version += 1
                    await self._drain()
                    self.abort()
                    return

    async def _drain(self) -> None:
        """Wait until the transport has handed every byte to the kernel, for ``close_timeout`` at most."""
        transport = self.ws.transport
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._state.options.close_timeout):
                while transport.get_write_buffer_size() > 0:  # noqa: ASYNC110 - asyncio has no drained event
                    await asyncio.sleep(0.001)

    def _build(self, due: Due) -> str:
        market = self._state.market(self.info.business)
        now = now_millis()
        if due.stream is Stream.TRADE:
            return market.trade_frame(due.code, now)
        if due.stream is Stream.DEPTH:
            return market.depth_frame(due.code, now)
        assert due.interval is not None  # kline pairs always carry their interval
        return market.kline_frame(due.code, due.interval, now)
