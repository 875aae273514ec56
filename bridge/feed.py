"""The vendor side's I/O: one task per connection that connects, pumps frames and reconnects.

Each :class:`FeedConnection` drives a sans-I/O :class:`~bridge.protocol.ConnectionSession` and
decides nothing itself. While a socket is open it runs two tasks: the reader hands every frame to
the session and passes the data outcomes (records, dead letters, gaps) to the injected ``emit``
port, and the writer sends what the session says is due (subscriptions, heartbeats) when it is
due, so heartbeats never wait behind a slow consumer of ``emit``.

When the socket ends, the session's :class:`~bridge.protocol.events.Disconnect` says whether to
retry: a terminal vendor error or a refused key stops the connection for good (``failure`` says
why; the process exits non-zero when none is left); anything else reconnects after an exponential
backoff with full jitter drawn from the injected :class:`RetryPolicy`, and resubscribes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bridge.feed_disconnect import disconnect_of
from bridge.metrics import BridgeMetrics, FrameCounter
from bridge.outlet import Outlet
from bridge.protocol import ConnectionSession
from bridge.protocol.events import (
    Disconnect,
    GapClosed,
    Notice,
    Outcome,
    Record,
    Rejected,
    StaleFeed,
    SubscribeAck,
    Subscribed,
    SubscribeRejected,
    VendorError,
    Welcome,
)
from bridge.records import Cause
from bridge.redact import RedactingFilter, redact
from bridge.timing import Clock, RetryPolicy, wait_event

log = logging.getLogger(__name__)

# websockets logs the request line, query string and key included, at DEBUG. It logs through
# this logger, whose own filter scrubs the key before any handler (ours, a test's, a library
# user's) sees the record.
wire_log = logging.getLogger("bridge.feed.websockets")
wire_log.addFilter(RedactingFilter())


FAILURES_BEFORE_WARNING = 5
"""Connection attempts failing in a row before one WARNING sums them up (each is INFO)."""
YIELD_EVERY_FRAMES = 64
"""The reader lets other tasks run after this many frames in a row (about 2 ms of work)."""
CLOSE_TIMEOUT_SECONDS = 2.0
"""How long the closing handshake may take before the socket is cut."""
DRAIN_SECONDS = CLOSE_TIMEOUT_SECONDS + 1.0
"""How long the reader may go on reading what the vendor sent before the socket ends (see ``_pump``)."""


def vendor_url(base_url: str, business: str, api_key: str) -> str:
    """The connection URL; it carries the key, so only ever log it through :func:`redact`."""
    return f"{base_url}?{urlencode({'business': business, 'apikey': api_key})}"


_DATA_OUTCOMES = (Record, Rejected, GapClosed)
"""What goes to the outlet; a tuple, as ``A | B | C`` would build a union object for every frame."""


class FeedConnection:
    """One vendor connection, kept alive until stopped or failed for good.

    Args:
        session: the protocol state for this connection's plan.
        url: the full URL including the key.
        outlet: where records, dead letters and gaps go; when it is full the feed closes the
            connection (a gap) and reconnects once there is room.
        metrics: counters and gauges of the connection.
        retry: the reconnect policy.
        clock: the time source.
        open_timeout: seconds allowed for the TCP + TLS + WebSocket handshake.
        secrets: scrubbed from anything logged about a failure.
    """

    def __init__(
        self,
        session: ConnectionSession,
        url: str,
        outlet: Outlet,
        metrics: BridgeMetrics,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        open_timeout: float = 10.0,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.session = session
        self._url = url
        self._where = url.split("?", 1)[0]
        self._outlet = outlet
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._clock = clock or Clock()
        self._open_timeout = open_timeout
        self._secrets = secrets
        self._business = session.plan.business
        self._wake_writer = asyncio.Event()
        self._counted_as_subscribed = False
        self._data_stopped: datetime | None = None
        # Every planned connection has a series from the start, so "down" is visible even for a
        # connection whose very first handshake is refused.
        metrics.connection_up.labels(self._business, session.plan.name).set(0)

    @property
    def failure(self) -> str | None:
        """Why this connection stopped for good, or ``None`` while it may still run."""
        failure = self.session.failure
        return None if failure is None else failure.detail

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, stream and reconnect until ``stop`` is set or a terminal error; safe to cancel."""
        backoff_attempt = failed_in_a_row = 0
        first_failure = 0.0
        while not stop.is_set():
            connection_id = self.session.begin_attempt()
            started = self._clock.monotonic()
            self._data_stopped = None
            opened, ended = await self._one_connection(stop)
            # The gap starts when reading stopped, not after the closing handshake (up to close_timeout).
            self.session.connection_lost(ended, self._data_stopped or self._clock.wall())
            if ended.cause is Cause.STOPPED or stop.is_set():
                return
            if ended.cause is Cause.SPOOL_FULL:
                self._metrics.reconnects.labels(self._business, ended.cause.value, "").inc()
                await self._wait_for_room(stop)
                continue
            if not ended.retry:
                self._metrics.terminal_errors.labels(self._business, _code(ended)).inc()
                log.error(
                    "connection %s (business %s) stopped for good: %s; not retrying (a reconnect cannot fix it)",
                    connection_id, self._business, ended.detail, extra=self._context(ended),
                )  # fmt: skip
                return
            if self._clock.monotonic() - started >= self._retry.healthy_after:
                backoff_attempt = 0
            delay = self._retry.delay(backoff_attempt)
            backoff_attempt += 1
            self._metrics.reconnects.labels(self._business, ended.cause.value, _code(ended)).inc()
            failed_in_a_row = 0 if opened else failed_in_a_row + 1
            if failed_in_a_row == 1:
                first_failure = started
            self._log_retry(connection_id, opened, ended, delay, backoff_attempt)
            if failed_in_a_row == FAILURES_BEFORE_WARNING:
                log.warning(
                    "connection %s (business %s): %d attempts in a row could not connect to %s over %.0fs "
                    "(last: %s); still retrying with backoff up to %gs: check source.url, the network and the key",
                    self.session.plan.name, self._business, failed_in_a_row, self._where,
                    self._clock.monotonic() - first_failure, ended.detail, self._retry.maximum,
                    extra=self._context(ended),
                )  # fmt: skip
            await wait_event(stop, delay)

    def _log_retry(self, connection_id: str, opened: bool, ended: Disconnect, delay: float, attempt: int) -> None:
        extra = self._context(ended, retry_in_seconds=round(delay, 3))
        if opened:
            log.warning(
                "connection %s (business %s) ended: %s; reconnecting in %.1fs (attempt %d)",
                connection_id, self._business, ended.detail, delay, attempt, extra=extra,
            )  # fmt: skip
        else:
            log.info(
                "connection %s (business %s) could not connect to %s: %s; retrying in %.1fs (attempt %d)",
                connection_id, self._business, self._where, ended.detail, delay, attempt, extra=extra,
            )  # fmt: skip

    async def _one_connection(self, stop: asyncio.Event) -> tuple[bool, Disconnect]:
        """One socket's life; returns whether it opened, and why it ended."""
        session = self.session
        opened = False
        try:
            async with connect(
                self._url,
                open_timeout=self._open_timeout,
                max_size=max(4 * session.max_frame_bytes, 16 << 20),
                compression=None,
                close_timeout=CLOSE_TIMEOUT_SECONDS,
                logger=wire_log,
            ) as socket:
                session.connection_opened(self._clock.monotonic())
                opened = True
                self._metrics.connection_up.labels(self._business, session.plan.name).set(1)
                log.info(
                    "connection %s open (business %s, %d codes)",
                    session.connection_id, self._business, len(session.plan.codes),
                )  # fmt: skip
                return True, await self._pump(socket, stop)
        except InvalidStatus as exc:
            status = exc.response.status_code
            self._metrics.vendor_errors.labels(self._business, str(status)).inc()
            return False, session.handshake_refused(status)
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            log.debug("connection %s failed: %s", session.connection_id, redact(repr(exc), self._secrets))
            return opened, disconnect_of(exc, self._secrets)
        finally:
            self._metrics.connection_up.labels(self._business, session.plan.name).set(0)
            self._count_subscribed(subscribed=False)

    async def _pump(self, socket: ClientConnection, stop: asyncio.Event) -> Disconnect:
        """Run the reader and the writer until one ends the connection (or the bridge stops); say why.

        The reader is never cut off while the vendor's frames may still be queued: when the writer
        ends (the vendor closed the socket, or the session found the feed stale) or the bridge
        stops, the closing handshake starts and the reader goes on until the socket ends, within
        :data:`DRAIN_SECONDS`. So every push the vendor sent before it saw the close is read:
        a stop loses nothing, and a vendor's close loses nothing behind a busy reader.
        """
        name = self.session.connection_id
        reader = asyncio.create_task(self._read(socket), name=f"{name}-reader")
        writer = asyncio.create_task(self._write(socket), name=f"{name}-writer")
        stopper = asyncio.create_task(stop.wait(), name=f"{name}-stop")
        tasks: list[asyncio.Task[Any]] = [reader, writer, stopper]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if reader not in done:
                writer.cancel()
                stopper.cancel()
                tasks.append(asyncio.create_task(socket.close(), name=f"{name}-close"))
                await asyncio.wait((reader,), timeout=DRAIN_SECONDS)
            self._data_stopped = self._clock.wall()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task
        if stopper in done:
            return Disconnect(Cause.STOPPED, detail="the bridge is stopping")
        drained = _result(reader)
        if isinstance(drained, Disconnect):
            return drained  # what the last frames said (a vendor error before its close) comes first
        for task in (reader, writer):
            if task in done:
                ended = _result(task)
                if isinstance(ended, BaseException):
                    return disconnect_of(ended, self._secrets)
                if ended is not None:
                    return ended
        return Disconnect(Cause.CLOSED, detail="the vendor closed the connection")

    async def _read(self, socket: ClientConnection) -> Disconnect | None:
        session, outlet, clock = self.session, self._outlet, self._clock
        frames = FrameCounter(self._metrics, self._business)
        turn = 0
        try:
            async for frame in socket:
                turn += 1
                if turn >= YIELD_EVERY_FRAMES:
                    # websockets hands out queued frames without awaiting: without this, a reader
                    # that is behind never lets the delivery task (or /metrics) run.
                    turn = 0
                    await asyncio.sleep(0)
                now = clock.monotonic()
                kind, outcomes = session.receive(frame, now, clock.wall())
                frames.count(kind, now)  # a StrEnum member is its label: no .value lookup per frame
                for outcome in outcomes:
                    if isinstance(outcome, _DATA_OUTCOMES):
                        outlet.emit(outcome)
                    elif isinstance(outcome, Disconnect):
                        return outcome
                    else:
                        self._report(outcome)
                if not outlet.accepting:
                    return Disconnect(Cause.SPOOL_FULL, detail="the spool is full (spool.max_bytes); stopped reading")
                self._wake_writer.set()
        finally:
            frames.flush()
        return None

    async def _wait_for_room(self, stop: asyncio.Event) -> None:
        log.error(
            "connection %s (business %s) closed: the spool is full; reconnecting once Kafka has taken records "
            "(the interval is published as a gap)",
            self.session.connection_id, self._business,
        )  # fmt: skip
        room = asyncio.create_task(self._outlet.wait_for_room(), name=f"{self.session.plan.name}-room")
        stopper = asyncio.create_task(stop.wait(), name=f"{self.session.plan.name}-room-stop")
        try:
            await asyncio.wait({room, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (room, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _report(self, outcome: Outcome) -> None:
        """Log (and count) what the session says about the connection itself."""
        name = self.session.connection_id
        match outcome:
            case VendorError():
                self._metrics.vendor_errors.labels(self._business, str(outcome.code)).inc()
                log.log(
                    logging.ERROR if outcome.terminal else logging.WARNING,
                    "connection %s (business %s): vendor error %d (%s): %s [trace %s]; %s",
                    name, self._business, outcome.code, outcome.name, outcome.message, outcome.trace,
                    outcome.recovery.advice,
                    extra={"business": self._business, "connection": name, "code": outcome.code,
                           "reason": outcome.name},
                )  # fmt: skip
            case SubscribeRejected(text=text):
                log.error(
                    "connection %s (business %s): subscription refused: %s; check the business and plan",
                    name, self._business, text,
                )  # fmt: skip
            case Subscribed():
                self._count_subscribed(subscribed=True)
                log.debug("connection %s: every subscription acknowledged", name)
            case StaleFeed(silent_for=silent, reconnect=reconnect):
                log.warning(
                    "connection %s (business %s): no push for %.0fs on %d codes (a closed market, a wrong business "
                    "or unknown codes look like this); %s",
                    name, self._business, silent, len(self.session.plan.codes),
                    "reconnecting (on_stale: reconnect)" if reconnect else "reporting only (on_stale: report)",
                )  # fmt: skip
            case Notice(text=text) | Welcome(message=text):
                log.info("connection %s (business %s): vendor says %r", name, self._business, text)
            case SubscribeAck(stream=stream):
                log.debug("connection %s: %s subscription acknowledged", name, stream)
            case _:
                log.debug("connection %s: %r", name, outcome)

    async def _write(self, socket: ClientConnection) -> Disconnect | None:
        session, clock = self.session, self._clock
        while True:
            now = clock.monotonic()
            for frame in session.frames_to_send(now):
                await socket.send(frame)
            for outcome in session.check_stale(now):
                if isinstance(outcome, Disconnect):
                    return outcome
                self._report(outcome)
            wakeup = session.next_wakeup(clock.monotonic())
            self._wake_writer.clear()
            timeout = None if wakeup is None else max(wakeup - clock.monotonic(), 0.0)
            await wait_event(self._wake_writer, timeout)

    def finish(self) -> None:
        """Publish a gap still open when the bridge stops (or this connection failed for good)."""
        closed = self.session.finish(self._clock.wall())
        if closed is not None:
            self._outlet.emit(closed)

    def _context(self, ended: Disconnect, **fields: object) -> dict[str, object]:
        """Structured context for a log line (JSON logs carry it as fields)."""
        return {
            "business": self._business,
            "connection": self.session.connection_id,
            "reason": ended.cause.value,
            "code": ended.code,
            **fields,
        }

    def _count_subscribed(self, *, subscribed: bool) -> None:
        """Add this connection's codes to (or take them from) the per-business gauge, once each way.

        Several connections of one business share the gauge's labels, so each adds its own share
        rather than setting the total.
        """
        if subscribed == self._counted_as_subscribed:
            return
        self._counted_as_subscribed = subscribed
        sign = 1 if subscribed else -1
        for subscription in self.session.plan.subscriptions:
            gauge = self._metrics.subscribed_codes.labels(self._business, subscription.stream.value)
            gauge.inc(sign * len(subscription.codes))


def _result(task: asyncio.Task[Disconnect | None]) -> Disconnect | BaseException | None:
    """What a finished pump task returned or raised; ``None`` when it was cancelled or is still running."""
    if not task.done() or task.cancelled():
        return None
    return task.exception() or task.result()


def _code(ended: Disconnect) -> str:
    return "" if ended.code is None else str(ended.code)
