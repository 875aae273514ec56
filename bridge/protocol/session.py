"""One vendor connection's protocol state, with no I/O: frames and time in, outcomes and frames out.

Theory of operation
-------------------
The I/O shell (:mod:`bridge.feed`) owns the socket and the clock, and decides nothing. Before
each connection attempt it asks for the attempt's id (:meth:`ConnectionSession.begin_attempt`),
tells the session when the handshake completed (:meth:`~ConnectionSession.connection_opened`) or
was refused (:meth:`~ConnectionSession.handshake_refused`), hands it every frame with the
monotonic and wall-clock time of receipt (:meth:`~ConnectionSession.receive`), sends whatever
:meth:`~ConnectionSession.frames_to_send` returns, asks :meth:`~ConnectionSession.check_stale`
when it wakes, sleeps until :meth:`~ConnectionSession.next_wakeup`, and reports the socket's end
(:meth:`~ConnectionSession.connection_lost`).

What comes back are values (:mod:`bridge.protocol.events`): a record to publish with its
provenance, a dead letter, a closed gap, "every subscription acknowledged", a stale feed, and a
:class:`~bridge.protocol.events.Disconnect` with its cause and whether to retry. Everything the
vendor's behaviour asks a decision for is decided here: which normaliser, which dead-letter
reason, whether an error frame ends the connection, whether silence reconnects (``on_stale``),
whether a refused handshake is worth retrying, where a gap starts and ends.

Subscriptions go first (each merged into one frame), heartbeats every ``heartbeat_interval``, a
resend of any subscription whose ack is overdue, all of it through one
:class:`~bridge.protocol.budget.FrameBudget` that keeps ``heartbeat_reserve`` frames free for
heartbeats. The budget outlives a socket: the gateway counts frames per connection, and keeping
the count across a reconnect means a flapping link can never push the bridge over the limit.

State is an enum plus a transition table: a trigger not in the table for the current state is
ignored (a late ack after a close, say), so the shell can never drive the session into an
undefined state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from bridge.errors import MalformedPayload
from bridge.protocol.budget import FrameBudget
from bridge.protocol.classify import DEFAULT_MAX_FRAME_BYTES, classify_frame
from bridge.protocol.codes import Recovery, handshake_status_info
from bridge.protocol.events import (
    Disconnect,
    FrameKind,
    GapClosed,
    Garbage,
    Outcome,
    Push,
    Record,
    Rejected,
    StaleFeed,
    SubscribeAck,
    Subscribed,
    SubscribeRejected,
    UnknownFrame,
    VendorError,
)
from bridge.protocol.gaps import GapTracker
from bridge.protocol.normalize import NORMALIZERS
from bridge.protocol.requests import ConnectionPlan, Subscription, heartbeat_frame, subscribe_frame
from bridge.records import Cause, DeadLetter, DeadLetterStage, Provenance

DEFAULT_HEARTBEAT_INTERVAL = 30.0
DEFAULT_ACK_TIMEOUT = 8.0
DEFAULT_HEARTBEAT_RESERVE = 8
_MAX_ACK_TIMEOUT = 120.0


class ConnectionState(enum.Enum):
    """Where a connection stands."""

    IDLE = "idle"
    """No socket: before the first handshake or after a close."""
    SUBSCRIBING = "subscribing"
    """Socket open, some subscription not yet acknowledged."""
    STREAMING = "streaming"
    """Every subscription acknowledged."""
    FAILED = "failed"
    """A terminal vendor error: no reconnect can help."""


class Trigger(enum.Enum):
    """What can happen to a connection."""

    OPENED = "opened"
    ALL_ACKED = "all_acked"
    RESUBSCRIBE = "resubscribe"
    LOST = "lost"
    TERMINAL_ERROR = "terminal_error"


_S, _T = ConnectionState, Trigger
TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    (_S.IDLE, _T.OPENED): _S.SUBSCRIBING,
    (_S.SUBSCRIBING, _T.ALL_ACKED): _S.STREAMING,
    (_S.STREAMING, _T.RESUBSCRIBE): _S.SUBSCRIBING,
    (_S.SUBSCRIBING, _T.LOST): _S.IDLE,
    (_S.STREAMING, _T.LOST): _S.IDLE,
    (_S.IDLE, _T.TERMINAL_ERROR): _S.FAILED,
    (_S.SUBSCRIBING, _T.TERMINAL_ERROR): _S.FAILED,
    (_S.STREAMING, _T.TERMINAL_ERROR): _S.FAILED,
}


class StalePolicy(enum.StrEnum):
    """What a stale feed (no push for ``stale_after`` seconds) leads to."""

    RECONNECT = "reconnect"
    """Replace the connection: a socket that went quiet is often a dead one."""
    REPORT = "report"
    """Only log it: right for markets that close, where silence is normal."""


class Reception(NamedTuple):
    """What one frame meant: its label for the frame counter, and the outcomes, in order."""

    kind: FrameKind
    outcomes: tuple[Outcome, ...]


def run_id(started: datetime, nonce: int) -> str:
    """A process run's id, ``20261202T015346Z-3f9a1c``: its UTC start to the second and 24 random bits.

    Part of every connection id, so records of two runs (restarts, replicas) never share a
    ``(connection_id, sequence)``; readable, and sortable by start time.
    """
    return f"{started:%Y%m%dT%H%M%SZ}-{nonce & 0xFFFFFF:06x}"


@dataclass(slots=True)
class _Outstanding:
    subscription: Subscription
    trace: str
    sent_at: float
    attempts: int


class ConnectionSession:
    """The protocol side of one vendor connection (see the module docstring).

    Args:
        plan: the subscriptions this connection carries.
        run_id: this process run's id (:func:`run_id`), part of every connection id.
        budget: the frame budget; shared across reconnects of this connection.
        heartbeat_interval: seconds between heartbeats (the vendor expects 30).
        ack_timeout: seconds to wait for a subscribe ack before resending (doubles per attempt).
        heartbeat_reserve: frames of the budget subscribes may not use.
        max_frame_bytes: larger frames are classified as garbage.
        stale_after: seconds without a push after which the feed is stale (``None``: never).
        on_stale: what a stale feed leads to.
    """

    def __init__(
        self,
        plan: ConnectionPlan,
        *,
        run_id: str = "local",
        budget: FrameBudget | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        heartbeat_reserve: int = DEFAULT_HEARTBEAT_RESERVE,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        stale_after: float | None = None,
        on_stale: StalePolicy = StalePolicy.RECONNECT,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.budget = budget if budget is not None else FrameBudget()
        self.heartbeat_interval = heartbeat_interval
        self.ack_timeout = ack_timeout
        self.heartbeat_reserve = min(heartbeat_reserve, self.budget.limit - 1)
        self.max_frame_bytes = max_frame_bytes
        self.stale_after = stale_after
        self.on_stale = on_stale
        self.state = ConnectionState.IDLE
        self.failure: Disconnect | None = None
        """The terminal disconnect that stopped this connection for good, once it happened."""
        self.attempts = 0
        self.connection_id = ""
        self.sequence = 0
        self.opened_at: float | None = None
        self.last_push_at: float | None = None
        self._streams = tuple(dict.fromkeys(sub.stream for sub in plan.subscriptions))
        self.gaps = GapTracker(plan.business, plan.name, plan.codes, self._streams)
        self._stale_noted = False
        self._queued: list[Subscription] = []
        self._outstanding: list[_Outstanding] = []
        self._next_heartbeat = 0.0
        self._trace_counter = 0

    def _fire(self, trigger: Trigger) -> None:
        self.state = TRANSITIONS.get((self.state, trigger), self.state)

    def _trace(self) -> str:
        self._trace_counter += 1
        return f"{self.plan.name}-{self._trace_counter}"

    @property
    def subscribed(self) -> bool:
        """Whether the socket is open and nothing is waiting to be (re)sent or acknowledged."""
        return self.state is ConnectionState.STREAMING

    # -- the connection's turns ----------------------------------------------------------------

    def begin_attempt(self) -> str:
        """A new connection attempt begins; returns its id, ``<plan>#<attempt>@<run id>``."""
        self.attempts += 1
        self.connection_id = f"{self.plan.name}#{self.attempts}@{self.run_id}"
        return self.connection_id

    def connection_opened(self, now: float) -> None:
        """The handshake completed: queue every subscription, start the heartbeat clock and the sequence."""
        self._fire(Trigger.OPENED)
        self.opened_at = now
        self.last_push_at = None
        self.sequence = 0
        self._stale_noted = False
        self._queued = list(self.plan.subscriptions)
        self._outstanding = []
        self._next_heartbeat = now + self.heartbeat_interval

    def handshake_refused(self, status: int) -> Disconnect:
        """The gateway refused the handshake with HTTP ``status``: retry (429, 5xx) or give up (401, 404)."""
        info = handshake_status_info(status)
        refused = Disconnect(
            Cause.HTTP_REFUSED, status, retry=not info.terminal, detail=f"HTTP {status} ({info.name}): {info.meaning}"
        )
        if info.terminal:
            self._fail(refused)
        return refused

    def connection_lost(self, ended: Disconnect, wall: datetime) -> None:
        """The socket is gone (``ended`` says why); a later :meth:`connection_opened` resubscribes everything."""
        self._fire(Trigger.LOST)
        self._queued = []
        self._outstanding = []
        if ended.cause is not Cause.STOPPED:
            self.gaps.stopped(ended.cause, ended.code, wall, self.connection_id)

    def inherit_gap(self, since: datetime, previous_connection_id: str) -> None:
        """This connection takes over codes whose data stopped at ``since`` (a shard handed over)."""
        self.gaps.inherit(since, Cause.SHARD_MOVED, previous_connection_id)

    def finish(self, wall: datetime) -> GapClosed | None:
        """The bridge stops: the gap still open, reported unresolved, if there is one."""
        gap = self.gaps.finish(wall)
        return None if gap is None else GapClosed(gap)

    def _fail(self, disconnect: Disconnect) -> None:
        self.failure = disconnect
        self._fire(Trigger.TERMINAL_ERROR)

    # -- frames in -----------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now: float, wall: datetime) -> Reception:
        """Classify one frame received at ``now`` (monotonic) and ``wall`` (UTC), and decide what follows."""
        event = classify_frame(frame, max_frame_bytes=self.max_frame_bytes)
        if isinstance(event, Push):
            return Reception(event.kind, self._push(event, now, wall))
        if isinstance(event, SubscribeAck):
            return Reception(event.kind, (event, *self._acknowledge(event, wall)))
        if isinstance(event, VendorError):
            return Reception(event.kind, (event, *self._vendor_error(event)))
        if isinstance(event, Garbage):
            return Reception(event.kind, (self._rejected(event.reason, "frame not understood", event.raw, wall),))
        if isinstance(event, UnknownFrame):
            return Reception(event.kind, (self._rejected("unknown_code", f"code {event.code}", event.raw, wall),))
        if isinstance(event, SubscribeRejected):
            # A prose refusal is final for what was asked: resending would only burn budget.
            self._outstanding = []
            self._queued = []
        return Reception(event.kind, (event,))

    def _push(self, push: Push, now: float, wall: datetime) -> tuple[Outcome, ...]:
        if push.stream not in self._streams:
            # Not asked for: the bridge has no topic for it, and a vendor that sends it is wrong.
            return (self._rejected("unsubscribed_stream", f"{push.stream} was not subscribed", push.raw, wall),)
        self.last_push_at = now
        self._stale_noted = False
        self.sequence += 1
        provenance = Provenance(self.plan.business, self.connection_id, self.sequence, wall)
        try:
            outcome: Outcome = Record(NORMALIZERS[push.stream](push.payload, provenance), push.raw)
        except MalformedPayload as exc:
            outcome = self._rejected(exc.reason, str(exc), push.raw, wall, DeadLetterStage.NORMALIZE)
        gap = self.gaps.push_seen(wall, self.connection_id)
        return (outcome,) if gap is None else (GapClosed(gap), outcome)

    def _rejected(
        self, reason: str, detail: str, raw: str, wall: datetime, stage: DeadLetterStage = DeadLetterStage.CLASSIFY
    ) -> Rejected:
        letter = DeadLetter(reason, stage, detail, raw, wall, self.plan.business, self.connection_id)
        return Rejected(letter)

    def _acknowledge(self, ack: SubscribeAck, wall: datetime) -> tuple[Outcome, ...]:
        match = next((o for o in self._outstanding if o.trace == ack.trace), None)
        if match is None:
            match = next((o for o in self._outstanding if o.subscription.stream == ack.stream), None)
        if match is not None:
            self._outstanding.remove(match)
        if self._outstanding or self._queued or self.state is not ConnectionState.SUBSCRIBING:
            return ()
        self._fire(Trigger.ALL_ACKED)
        gap = self.gaps.data_seen(wall, self.connection_id)
        return (Subscribed(),) if gap is None else (Subscribed(), GapClosed(gap))

    def _vendor_error(self, error: VendorError) -> tuple[Outcome, ...]:
        detail = f"vendor error {error.code} ({error.name}): {error.message}"
        if error.recovery is Recovery.TERMINAL:
            ended = Disconnect(Cause.VENDOR_ERROR, error.code, retry=False, detail=detail)
            self._fail(ended)
            return (ended,)
        if error.recovery is Recovery.RECONNECT:
            return (Disconnect(Cause.VENDOR_ERROR, error.code, detail=detail),)
        # A refused request (bad parameter, over a plan limit) will be refused again.
        self._outstanding = [o for o in self._outstanding if o.trace != error.trace]
        return ()

    # -- frames out and timers -----------------------------------------------------------------

    def frames_to_send(self, now: float) -> list[str]:
        """Every frame that is due at ``now`` and fits the budget, in the order to send them."""
        if self.state not in (ConnectionState.SUBSCRIBING, ConnectionState.STREAMING):
            return []
        frames: list[str] = []
        if now >= self._next_heartbeat and self.budget.next_slot(now) <= now:
            self.budget.record(now)
            frames.append(heartbeat_frame(self._trace()))
            self._next_heartbeat = now + self.heartbeat_interval
        for overdue in [o for o in self._outstanding if now >= self._ack_deadline(o)]:
            if self.budget.next_slot(now, reserve=self.heartbeat_reserve) > now:
                break
            self.budget.record(now)
            overdue.trace, overdue.sent_at, overdue.attempts = self._trace(), now, overdue.attempts + 1
            frames.append(subscribe_frame(overdue.subscription, overdue.trace))
        while self._queued and self.budget.next_slot(now, reserve=self.heartbeat_reserve) <= now:
            subscription = self._queued.pop(0)
            self.budget.record(now)
            trace = self._trace()
            self._outstanding.append(_Outstanding(subscription, trace, now, 1))
            frames.append(subscribe_frame(subscription, trace))
        return frames

    def _ack_deadline(self, outstanding: _Outstanding) -> float:
        backoff = self.ack_timeout * 2.0 ** (outstanding.attempts - 1)
        return outstanding.sent_at + min(backoff, _MAX_ACK_TIMEOUT)

    def next_wakeup(self, now: float) -> float | None:
        """When :meth:`frames_to_send` or :meth:`check_stale` may next have something (``None``: nothing planned)."""
        if self.state not in (ConnectionState.SUBSCRIBING, ConnectionState.STREAMING):
            return None
        candidates = [max(self._next_heartbeat, self.budget.next_slot(now))]
        if self._queued:
            candidates.append(self.budget.next_slot(now, reserve=self.heartbeat_reserve))
        candidates.extend(self._ack_deadline(o) for o in self._outstanding)
        stale_at = self._stale_at()
        if stale_at is not None:
            candidates.append(stale_at)
        return min(candidates)

    def _stale_at(self) -> float | None:
        reference = self.last_push_at if self.last_push_at is not None else self.opened_at
        if self.stale_after is None or self._stale_noted or reference is None:
            return None
        return reference + self.stale_after

    def check_stale(self, now: float) -> tuple[Outcome, ...]:
        """Once per silent spell: no push for ``stale_after`` seconds on an open socket.

        Silence is counted from the open when no push came at all: the vendor acks a wrong
        business or an unknown code and then says nothing (protocol page), which is exactly the
        case to report. A push ends the spell. With ``on_stale: reconnect`` a
        :class:`~bridge.protocol.events.Disconnect` follows the :class:`~bridge.protocol.events.StaleFeed`.
        """
        if self.state not in (ConnectionState.SUBSCRIBING, ConnectionState.STREAMING):
            return ()
        stale_at = self._stale_at()
        if stale_at is None or now < stale_at:
            return ()
        self._stale_noted = True
        reconnect = self.on_stale is StalePolicy.RECONNECT
        stale = StaleFeed(self.silent_for(now), reconnect)
        return (stale, Disconnect(Cause.STALE)) if reconnect else (stale,)

    def silent_for(self, now: float) -> float:
        """Seconds since the last push (or since the socket opened, when none came yet)."""
        reference = self.last_push_at if self.last_push_at is not None else self.opened_at
        if reference is None or now < reference:
            return 0.0
        return now - reference
