"""One vendor connection's protocol state, with no I/O: frames and time in, frames out.

Theory of operation
-------------------
The I/O shell (:mod:`bridge.feed`) owns the socket and the clock. It tells the session when
the handshake completed (:meth:`ConnectionSession.connection_opened`), hands it every frame
(:meth:`~ConnectionSession.receive`), sends whatever :meth:`~ConnectionSession.frames_to_send`
returns, and sleeps until :meth:`~ConnectionSession.next_wakeup`. The session decides what to
send and when: subscriptions first (each merged into one frame), heartbeats every
``heartbeat_interval``, a resend of any subscription whose ack is overdue, all of it through one
:class:`~bridge.protocol.budget.FrameBudget` that keeps ``heartbeat_reserve`` frames free for
heartbeats.

State is an enum plus a transition table: a trigger not in the table for the current state
is ignored (a late ack after a close, say), so the shell can never drive the session into an
undefined state.

The budget outlives a socket: the gateway counts frames per connection, and keeping the count
across a reconnect means a flapping link can never push the bridge over the limit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.protocol.budget import FrameBudget
from bridge.protocol.classify import DEFAULT_MAX_FRAME_BYTES, classify_frame
from bridge.protocol.codes import Recovery
from bridge.protocol.events import Push, ServerEvent, SubscribeAck, SubscribeRejected, VendorError
from bridge.protocol.requests import ConnectionPlan, Subscription, heartbeat_frame, subscribe_frame

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
        budget: the frame budget; shared across reconnects of this connection.
        heartbeat_interval: seconds between heartbeats (the vendor expects 30).
        ack_timeout: seconds to wait for a subscribe ack before resending (doubles per attempt).
        heartbeat_reserve: frames of the budget subscribes may not use.
        max_frame_bytes: larger frames are classified as garbage.
        stale_after: seconds without a push after which the feed is stale (``None``: never).
    """

    def __init__(
        self,
        plan: ConnectionPlan,
        *,
        budget: FrameBudget | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        heartbeat_reserve: int = DEFAULT_HEARTBEAT_RESERVE,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        stale_after: float | None = None,
    ) -> None:
        self.plan = plan
        self.budget = budget if budget is not None else FrameBudget()
        self.heartbeat_interval = heartbeat_interval
        self.ack_timeout = ack_timeout
        self.heartbeat_reserve = min(heartbeat_reserve, self.budget.limit - 1)
        self.max_frame_bytes = max_frame_bytes
        self.stale_after = stale_after
        self._stale_noted = False
        self.state = ConnectionState.IDLE
        self.failure: VendorError | None = None
        self.reconnect_reason: str | None = None
        self.opened_at: float | None = None
        self.last_push_at: float | None = None
        self._queued: list[Subscription] = []
        self._outstanding: list[_Outstanding] = []
        self._next_heartbeat = 0.0
        self._trace_counter = 0

    def _fire(self, trigger: Trigger) -> None:
        self.state = TRANSITIONS.get((self.state, trigger), self.state)

    def _trace(self) -> str:
        self._trace_counter += 1
        return f"{self.plan.name}-{self._trace_counter}"

    def connection_opened(self, now: float) -> None:
        """The handshake completed: queue every subscription and start the heartbeat clock."""
        self._fire(Trigger.OPENED)
        self.opened_at = now
        self.last_push_at = None
        self.reconnect_reason = None
        self._stale_noted = False
        self._queued = list(self.plan.subscriptions)
        self._outstanding = []
        self._next_heartbeat = now + self.heartbeat_interval

    def connection_lost(self) -> None:
        """The socket is gone; a later :meth:`connection_opened` resubscribes everything."""
        self._fire(Trigger.LOST)
        self._queued = []
        self._outstanding = []

    def fail_handshake(self, status: int, name: str, meaning: str) -> None:
        """The gateway refused the handshake with a terminal HTTP status (401, say): give up."""
        self.failure = VendorError(status, name, Recovery.TERMINAL, meaning, None, "")
        self._fire(Trigger.TERMINAL_ERROR)

    def receive(self, frame: str | bytes, now: float) -> ServerEvent:
        """Classify one frame and update the connection's state from it."""
        event = classify_frame(frame, max_frame_bytes=self.max_frame_bytes)
        if isinstance(event, Push):
            self.last_push_at = now
            self._stale_noted = False
        elif isinstance(event, SubscribeAck):
            self._acknowledge(event)
        elif isinstance(event, VendorError):
            self._vendor_error(event)
        elif isinstance(event, SubscribeRejected):
            # A prose refusal is final for what was asked: resending would only burn budget.
            self._outstanding = []
            self._queued = []
        return event

    def _acknowledge(self, ack: SubscribeAck) -> None:
        match = next((o for o in self._outstanding if o.trace == ack.trace), None)
        if match is None:
            match = next((o for o in self._outstanding if o.subscription.stream == ack.stream), None)
        if match is not None:
            self._outstanding.remove(match)
        if not self._outstanding and not self._queued:
            self._fire(Trigger.ALL_ACKED)

    def _vendor_error(self, error: VendorError) -> None:
        if error.recovery is Recovery.TERMINAL:
            self.failure = error
            self._fire(Trigger.TERMINAL_ERROR)
        elif error.recovery is Recovery.RECONNECT:
            self.reconnect_reason = f"vendor_{error.code}"
        else:
            # A refused request (bad parameter, over a plan limit) will be refused again.
            self._outstanding = [o for o in self._outstanding if o.trace != error.trace]

    @property
    def subscribed(self) -> bool:
        """Whether the socket is open and nothing is waiting to be (re)sent or acknowledged."""
        return self.state is ConnectionState.STREAMING

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
        """When :meth:`frames_to_send` may next have something to send (``None``: nothing planned)."""
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

    def became_stale(self, now: float) -> bool:
        """True once per silent spell: no push for ``stale_after`` seconds on an open socket.

        Silence is counted from the open when no push came at all: the vendor acks a wrong
        business or an unknown code and then says nothing (protocol page), which is exactly the
        case to report. A push ends the spell.
        """
        if self.state not in (ConnectionState.SUBSCRIBING, ConnectionState.STREAMING):
            return False
        stale_at = self._stale_at()
        if stale_at is None or now < stale_at:
            return False
        self._stale_noted = True
        return True

    def silent_for(self, now: float) -> float:
        """Seconds since the last push (or since the socket opened, when none came yet)."""
        reference = self.last_push_at if self.last_push_at is not None else self.opened_at
        if reference is None or now < reference:
            return 0.0
        return now - reference
