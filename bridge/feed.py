"""The vendor side's I/O: one task per connection that connects, pumps frames and reconnects.

Each :class:`FeedConnection` drives a sans-I/O :class:`~bridge.protocol.ConnectionSession`.
While a socket is open it runs two tasks: the reader turns every frame into records (or dead
letters) and hands them to the sink, and the writer sends what the session says is due
(subscriptions, heartbeats) when it is due. Heartbeats therefore never wait behind a slow
Kafka.

When the socket ends, the connection decides by blame: a terminal vendor error or a refused key
stops it for good (``failure`` says why, the process exits non-zero when none is left); anything
else reconnects after an exponential backoff with full jitter drawn from the injected
:class:`RetryPolicy`, and the session resubscribes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bridge.errors import MalformedPayload
from bridge.metrics import BridgeMetrics
from bridge.protocol import (
    ConnectionSession,
    ConnectionState,
    Garbage,
    Notice,
    Push,
    SubscribeAck,
    SubscribeRejected,
    UnknownFrame,
    VendorError,
    Welcome,
    handshake_status_info,
)
from bridge.protocol.events import ServerEvent
from bridge.protocol.normalize import NORMALIZERS
from bridge.records import GapRecord, Provenance
from bridge.redact import RedactingFilter, redact
from bridge.serialize import DeadLetter, DeadLetterStage, KafkaMessage, RecordSerializer

log = logging.getLogger(__name__)

# websockets logs the request line, query string and key included, at DEBUG. It logs through
# this logger, whose own filter scrubs the key before any handler (ours, a test's, a library
# user's) sees the record.
wire_log = logging.getLogger("bridge.feed.websockets")
wire_log.addFilter(RedactingFilter())

_EVENT_KIND: Mapping[type[ServerEvent], str] = {
    Welcome: "notice",
    Notice: "notice",
    SubscribeAck: "ack",
    VendorError: "error",
    SubscribeRejected: "error",
    Garbage: "garbage",
    UnknownFrame: "garbage",
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Reconnect delays: exponential from ``initial`` to ``maximum`` with full jitter.

    Full jitter (a uniform draw between 0 and the exponential bound) spreads the reconnects of
    many bridges after a vendor outage instead of synchronising them.
    ``healthy_after``: a connection that lived this long resets the exponent.
    """

    initial: float = 1.0
    maximum: float = 30.0
    healthy_after: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """The wait before reconnect attempt ``attempt`` (0-based)."""
        bound = min(self.maximum, self.initial * 2.0 ** min(attempt, 30))
        return self.rng.uniform(0, bound)


class Clock:
    """Time, injected: ``monotonic`` for intervals, ``wall`` for record timestamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        return time.monotonic()

    def wall(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


def vendor_url(base_url: str, business: str, api_key: str) -> str:
    """The connection URL; it carries the key, so only ever log it through :func:`redact`."""
    return f"{base_url}?{urlencode({'business': business, 'apikey': api_key})}"


class FeedConnection:
    """One vendor connection, kept alive until stopped or failed for good.

    Args:
        session: the protocol state for this connection's plan.
        url: the full URL including the key.
        serializer: turns records and dead letters into messages.
        deliver: where messages go (the sink's ``put``); may wait (backpressure).
        metrics: counters and gauges.
        retry: the reconnect policy.
        clock: the time source.
        open_timeout: seconds allowed for the TCP + TLS + WebSocket handshake.
    """

    def __init__(
        self,
        session: ConnectionSession,
        url: str,
        serializer: RecordSerializer,
        deliver: Callable[[KafkaMessage], Awaitable[None]],
        metrics: BridgeMetrics,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        open_timeout: float = 10.0,
        secrets: tuple[str, ...] = (),
        on_stale: Literal["reconnect", "report"] = "reconnect",
        gap_topic: str | None = None,
    ) -> None:
        self.session = session
        self._url = url
        self._serializer = serializer
        self._deliver = deliver
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._clock = clock or Clock()
        self._open_timeout = open_timeout
        self._secrets = secrets
        self._on_stale = on_stale
        self._gap_topic = gap_topic
        self._business = session.plan.business
        self._attempts = 0
        self.connection_id = ""
        self._sequence = 0
        self._wake_writer = asyncio.Event()
        self._ever_received = False
        self._counted_as_subscribed = False
        # Every planned connection has a series from the start, so "down" is visible even for a
        # connection whose very first handshake is refused.
        metrics.connection_up.labels(self._business, session.plan.name).set(0)
        self._last_push_wall: datetime | None = None
        self._open_gap: tuple[datetime, str, str] | None = None

    @property
    def failure(self) -> str | None:
        """Why this connection stopped for good, or ``None`` while it may still run."""
        failure = self.session.failure
        return None if failure is None else f"vendor error {failure.code} ({failure.name}): {failure.message}"

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, stream and reconnect until ``stop`` is set or a terminal error; safe to cancel."""
        plan = self.session.plan
        backoff_attempt = 0
        while not stop.is_set():
            self._attempts += 1
            self.connection_id = f"{plan.name}#{self._attempts}"
            opened_at = self._clock.monotonic()
            reason = await self._one_connection(stop)
            if reason != "stopped":
                self._begin_gap(reason)
            if self.session.state is ConnectionState.FAILED or stop.is_set():
                return
            if self._clock.monotonic() - opened_at >= self._retry.healthy_after:
                backoff_attempt = 0
            delay = self._retry.delay(backoff_attempt)
            backoff_attempt += 1
            self._metrics.reconnects.labels(self._business, reason).inc()
            log.warning(
                "connection %s (business %s) ended: %s; reconnecting in %.1fs (attempt %d)",
                self.connection_id, self._business, reason, delay, backoff_attempt,
                extra=self._context(reason=reason, code=_code_of(reason), retry_in_seconds=round(delay, 3)),
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _one_connection(self, stop: asyncio.Event) -> str:
        """One socket's life; returns the reason it ended."""
        session = self.session
        try:
            async with connect(
                self._url,
                open_timeout=self._open_timeout,
                max_size=max(4 * session.max_frame_bytes, 16 << 20),
                compression=None,
                close_timeout=2,
                logger=wire_log,
            ) as socket:
                self._sequence = 0
                session.connection_opened(self._clock.monotonic())
                self._metrics.connection_up.labels(self._business, session.plan.name).set(1)
                log.info(
                    "connection %s open (business %s, %d codes)",
                    self.connection_id, self._business, len(session.plan.codes),
                )  # fmt: skip
                return await self._pump(socket, stop)
        except InvalidStatus as exc:
            status = exc.response.status_code
            info = handshake_status_info(status)
            self._metrics.vendor_errors.labels(self._business, str(status)).inc()
            if info.terminal:
                session.fail_handshake(status, info.name, info.meaning)
                self._metrics.terminal_errors.labels(self._business, str(status)).inc()
                log.error(
                    "connection %s (business %s) refused with HTTP %d (%s): %s; not retrying",
                    self.connection_id, self._business, status, info.name, info.meaning,
                    extra=self._context(code=status, reason=info.name),
                )  # fmt: skip
            return f"http_{status}"
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            log.debug("connection %s failed: %s", self.connection_id, redact(repr(exc), self._secrets))
            return _failure_reason(exc)
        finally:
            session.connection_lost()
            self._metrics.connection_up.labels(self._business, session.plan.name).set(0)
            self._count_subscribed(subscribed=False)

    async def _pump(self, socket: ClientConnection, stop: asyncio.Event) -> str:
        reader = asyncio.create_task(self._read(socket), name=f"{self.connection_id}-reader")
        writer = asyncio.create_task(self._write(socket), name=f"{self.connection_id}-writer")
        stopper = asyncio.create_task(stop.wait(), name=f"{self.connection_id}-stop")
        tasks = {reader, writer, stopper}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task
        if stopper in done:
            return "stopped"
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                return _failure_reason(task.exception())
        return self.session.reconnect_reason or "closed"

    async def _read(self, socket: ClientConnection) -> None:
        session = self.session
        async for frame in socket:
            event = session.receive(frame, self._clock.monotonic())
            if isinstance(event, Push):
                self._metrics.frames_received.labels(self._business, f"push_{event.stream.value}").inc()
                await self._push(event)
                continue
            self._metrics.frames_received.labels(self._business, _EVENT_KIND.get(type(event), "ack")).inc()
            await self._control(event)
            if session.state is ConnectionState.FAILED or session.reconnect_reason is not None:
                return
            self._wake_writer.set()

    async def _push(self, push: Push) -> None:
        received = self._clock.wall()
        self._last_push_wall = received
        self._ever_received = True
        if self._open_gap is not None:
            await self._end_gap(received, resolved=True)
        self._sequence += 1
        provenance = Provenance(self._business, self.connection_id, self._sequence, received)
        try:
            record = NORMALIZERS[push.stream](push.payload, provenance)
        except MalformedPayload as exc:
            await self._dead_letter(exc.reason, "normalize", str(exc), push.raw, received)
            return
        try:
            message = self._serializer.serialize(record)
        except MalformedPayload as exc:
            await self._dead_letter(exc.reason, "serialize", str(exc), push.raw, received)
            return
        await self._deliver(message)

    async def _dead_letter(
        self, reason: str, stage: DeadLetterStage, detail: str, raw: str, received: datetime
    ) -> None:
        self._metrics.dead_letters.labels(reason).inc()
        log.warning(
            "dead letter from %s (business %s): %s at %s: %s",
            self.connection_id, self._business, reason, stage, detail,
            extra=self._context(reason=reason),
        )  # fmt: skip
        letter = DeadLetter(
            reason=reason,
            stage=stage,
            detail=detail,
            raw=raw,
            received_time=received,
            business=self._business,
            connection_id=self.connection_id,
        )
        await self._deliver(self._serializer.serialize_dead_letter(letter))

    async def _control(self, event: ServerEvent) -> None:
        match event:
            case Garbage(reason=reason, raw=raw):
                await self._dead_letter(reason, "classify", "frame not understood", raw, self._clock.wall())
            case UnknownFrame(code=code, raw=raw):
                await self._dead_letter("unknown_code", "classify", f"code {code}", raw, self._clock.wall())
            case VendorError():
                self._metrics.vendor_errors.labels(self._business, str(event.code)).inc()
                if event.terminal:
                    self._metrics.terminal_errors.labels(self._business, str(event.code)).inc()
                log.log(
                    logging.ERROR if event.terminal else logging.WARNING,
                    "connection %s (business %s): vendor error %d (%s): %s [trace %s]; %s",
                    self.connection_id, self._business, event.code, event.name, event.message,
                    event.trace, _what_next(event),
                    extra=self._context(code=event.code, reason=event.name),
                )  # fmt: skip
            case SubscribeRejected(text=text):
                log.error(
                    "connection %s (business %s): subscription refused: %s; check the business and plan",
                    self.connection_id, self._business, text,
                )  # fmt: skip
            case SubscribeAck(stream=stream):
                log.debug("connection %s: %s subscription acknowledged", self.connection_id, stream)
                if self.session.subscribed:
                    self._count_subscribed(subscribed=True)
                    self._ever_received = True
                    if self._open_gap is not None:
                        await self._end_gap(self._clock.wall(), resolved=True)
            case Notice(text=text) | Welcome(message=text):
                log.info("connection %s (business %s): vendor says %r", self.connection_id, self._business, text)
            case _:
                log.debug("connection %s: %r", self.connection_id, event)

    def _stale(self, now: float) -> bool:
        """Report a silent feed; True when the connection should be replaced."""
        silent = self.session.silent_for(now)
        reconnect = self._on_stale == "reconnect"
        log.warning(
            "connection %s (business %s): no push for %.0fs on %d codes (a closed market, a wrong business "
            "or unknown codes look like this); %s",
            self.connection_id, self._business, silent, len(self.session.plan.codes),
            "reconnecting (on_stale: reconnect)" if reconnect else "reporting only (on_stale: report)",
        )  # fmt: skip
        if reconnect:
            self.session.reconnect_reason = "stale"
        return reconnect

    def _begin_gap(self, cause: str) -> None:
        """Data stopped: from the last push for a stale feed, else from now (the socket's end)."""
        if self._open_gap is not None or not self._ever_received:
            return
        start = self._last_push_wall if cause == "stale" and self._last_push_wall else self._clock.wall()
        self._open_gap = (start, cause, self.connection_id)

    async def _end_gap(self, end: datetime, *, resolved: bool) -> None:
        assert self._open_gap is not None
        start, cause, previous = self._open_gap
        self._open_gap = None
        plan = self.session.plan
        gap = GapRecord(
            business=self._business,
            connection=plan.name,
            codes=plan.codes,
            streams=tuple(dict.fromkeys(sub.stream for sub in plan.subscriptions)),
            start=start,
            end=end,
            cause=cause,
            resolved=resolved,
            previous_connection_id=previous,
            next_connection_id=self.connection_id if resolved else None,
        )
        self._metrics.gap_seconds.labels(self._business).inc(gap.seconds)
        log.warning(
            "gap on %s (business %s, %d codes, %s): %s to %s (%.1fs), cause %s%s",
            plan.name, self._business, len(gap.codes), "/".join(gap.streams), start.isoformat(timespec="milliseconds"),
            end.isoformat(timespec="milliseconds"), gap.seconds, cause, "" if resolved else ", not resolved",
            extra=self._context(reason=cause, gap_seconds=round(gap.seconds, 3)),
        )  # fmt: skip
        if self._gap_topic is not None:
            await self._deliver(self._serializer.serialize_gap(gap, self._gap_topic))

    async def finish(self) -> None:
        """Report a gap still open when the bridge stops (or this connection failed for good)."""
        if self._open_gap is not None:
            await self._end_gap(self._clock.wall(), resolved=False)

    def _context(self, **fields: object) -> dict[str, object]:
        """Structured context for a log line (JSON logs carry it as fields)."""
        return {"business": self._business, "connection": self.connection_id, **fields}

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

    async def _write(self, socket: ClientConnection) -> None:
        session = self.session
        while True:
            now = self._clock.monotonic()
            for frame in session.frames_to_send(now):
                await socket.send(frame)
            if session.became_stale(now) and self._stale(now):
                return
            wakeup = session.next_wakeup(self._clock.monotonic())
            self._wake_writer.clear()
            timeout = None if wakeup is None else max(wakeup - self._clock.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_writer.wait(), timeout)


def _code_of(reason: str) -> int | None:
    """The vendor code or HTTP status inside a reconnect reason such as ``vendor_513`` or ``http_429``."""
    prefix, _, number = reason.partition("_")
    return int(number) if prefix in ("vendor", "http") and number.isdigit() else None


def _what_next(error: VendorError) -> str:
    if error.terminal:
        return "stopping this connection (a reconnect cannot fix it)"
    if error.recovery.value == "reconnect":
        return "reconnecting with backoff"
    return "check the subscription configuration"


def _failure_reason(exc: BaseException | None) -> str:
    if isinstance(exc, ConnectionClosed):
        return "closed"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "socket_error"
    if isinstance(exc, InvalidHandshake):
        return "handshake"
    return "error"
