"""One accepted WebSocket connection of the simulator: its reader, its sender, and their shared state.

Theory of operation
-------------------
Each connection runs two tasks, owned by :meth:`ServedConnection.serve`:

* the *reader* answers client frames: it passes each to the gateway with the monotonic time of
  receipt, and queues the verdict's reply (an ack, an error frame) and, for a cut, a close
  directive behind it. Applying a frame and queueing its reply happen with no await between,
  so an ack always leaves before the first push of what it acknowledges. From a cut on, the
  reader still reads (so the closing handshake completes) but answers nothing;
* the *sender*, the only task that writes to the socket, sends control replies first (one
  awaited ``send`` each: they are few) and then the pushes the pacer put in the connection's
  backlog. That is the fast path: up to :data:`_BATCH` pushes at a time are rendered as bytes
  (the market writes them from integers), framed here (:mod:`~bridge.simulator.wire`) and handed
  to the transport in one write, then the sender waits for the transport to drain below its
  high-water mark and yields. The clock is read once per batch, just before rendering, so a
  push's ``t`` is at most the batch's render time (well under a millisecond) older than its
  write. A push whose code was unsubscribed meanwhile is dropped and its reservation released;
  a push is counted (and recorded) once written. After every push, when a fault counts pushes,
  it asks the gateway what follows: a bad frame of ``garbage_every`` goes right behind it in
  the same write and, after ``close_after_pushes``, the batch ends there and the connection is
  aborted once the transport has drained, so the N pushes are on the wire.

Writing to the transport directly, beside websockets' own writes (control replies, pings, the
closing handshake), is safe because everything runs on one event loop and each write is whole
frames; pushes are written only while the connection is open, never after a close frame.

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
from websockets.protocol import State

from bridge.records import Stream
from bridge.simulator.gateway import Gateway, Line, garbage_frame
from bridge.simulator.market import Market
from bridge.simulator.options import SimulatorOptions, SimulatorStats
from bridge.simulator.pacer import Due, StreamPacer
from bridge.simulator.recorder import SentRecorder
from bridge.simulator.wire import frame, text_frame

logger = logging.getLogger("bridge.simulator")

# Pushes rendered into one transport write: enough to make the write's cost vanish per push,
# few enough (about 30 KB of trades) that the pacer and other connections wait little.
_BATCH: Final = 256
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
        self._origin_ms = time.time_ns() // 1_000_000
        self._origin = time.monotonic()

    def market(self, business: str) -> Market:
        """The market of ``business``, shared by its connections, made on first use."""
        market = self._markets.get(business)
        if market is None:
            market = self._markets[business] = Market(business, self.seed, self.options.quiet_bar_percent)
        return market

    def now_ms(self) -> int:
        """Market time in Unix milliseconds: the wall clock, or at ``time_scale`` from the start."""
        scale = self.options.time_scale
        if scale == 1:
            return now_millis()
        return self._origin_ms + int((time.monotonic() - self._origin) * scale * 1000)


class _BatchEnd(enum.Enum):
    """How a batch of pushes ended: more may follow, the connection is to be aborted, or it is closing."""

    CONTINUE = "continue"
    ABORT = "abort"
    CLOSED = "closed"


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
        ws = self.ws
        while True:
            await self.wake.wait()
            self.wake.clear()
            while True:
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
                end = self._write_batch()
                if end is _BatchEnd.CLOSED:
                    return
                if end is _BatchEnd.ABORT:
                    self._state.version += 1
                    await self._drain()
                    self.abort()
                    return
                # Backpressure (the transport is above its high-water mark), then let the pacer
                # and the other connections run before the next batch.
                await ws.drain()
                await asyncio.sleep(0)

    def _write_batch(self) -> _BatchEnd:
        """Render up to :data:`_BATCH` pushes owed and write them, with what follows them, in one write.

        Pushes whose code was unsubscribed meanwhile are dropped and their reservations released.
        The clock is read once: every push of the batch is stamped (at least) then, less than a
        millisecond before the write at the rates the fast path reaches.
        """
        state, info, ws = self._state, self.info, self.ws
        if ws.state is not State.OPEN:
            return _BatchEnd.CLOSED
        backlog, pacers, gateway, line, recorder = self.backlog, state.pacers, state.gateway, self.line, state.recorder
        market = state.market(info.business)
        watch = gateway.watches_pushes
        chunks: list[bytes] = []
        counts = dict.fromkeys(Stream, 0)
        now = state.now_ms()
        end = _BatchEnd.CONTINUE
        for _ in range(min(len(backlog), _BATCH)):
            stream, code, interval = backlog.popleft()
            if not info.wants(stream, code, interval):
                pacers[stream].release()
                continue
            if stream is Stream.TRADE:
                payload = market.trade_frame(code, now)
            elif stream is Stream.DEPTH:
                payload = market.depth_frame(code, now)
            else:
                assert interval is not None  # kline pairs always carry their interval
                if market.quiet(code, interval, now):
                    pacers[stream].release()
                    continue
                payload = market.kline_frame(code, interval, now)
            chunks.append(text_frame(payload))
            counts[stream] += 1
            if recorder is not None:
                recorder.write(info.business, payload)
            if watch:
                after = gateway.pushed(line, stream, code)
                if after.garbage is not None:
                    bad = garbage_frame(after.garbage, after.symbol, now)
                    chunks.append(frame(bad))
                    state.stats.garbage_sent += 1
                    if recorder is not None:
                        recorder.write_garbage(info.business, bad, after.garbage)
                if after.abort:
                    end = _BatchEnd.ABORT
                    break
        if not watch:
            line.pushes += sum(counts.values())
        if chunks:
            ws.transport.write(b"".join(chunks))
        for stream, count in counts.items():
            state.stats.pushes_sent[stream] += count
            self.pushes_sent[stream] += count
        return end

    async def _drain(self) -> None:
        """Wait until the transport has handed every byte to the kernel, for ``close_timeout`` at most."""
        transport = self.ws.transport
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._state.options.close_timeout):
                while transport.get_write_buffer_size() > 0:  # noqa: ASYNC110 - asyncio has no drained event
                    await asyncio.sleep(0.001)
