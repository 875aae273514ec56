"""What a vendor frame means, and what the session decided about it, as plain values (h11's events).

Two families:

* *frame events*: the classifier turns every frame, good or bad, into exactly one of these and
  never raises for bad input; ``raw`` is kept where the frame may need to travel to the
  dead-letter topic. ``kind`` is the frame's label in ``infoway_bridge_frames_received_total``.
* *outcomes*: what :class:`~bridge.protocol.session.ConnectionSession` hands the I/O shell: a
  record to publish, a dead letter, a closed gap, a subscription complete, a stale feed, or a
  disconnect with its :class:`~bridge.records.Cause`. The shell acts on them and decides nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from bridge.protocol.codes import Recovery
from bridge.records import Cause, DeadLetter, GapRecord, MarketRecord, Stream


class FrameKind(enum.StrEnum):
    """A frame's label in ``infoway_bridge_frames_received_total``."""

    PUSH_TRADE = "push_trade"
    PUSH_DEPTH = "push_depth"
    PUSH_KLINE = "push_kline"
    ACK = "ack"
    ERROR = "error"
    NOTICE = "notice"
    GARBAGE = "garbage"


_PUSH_KIND = {
    Stream.TRADE: FrameKind.PUSH_TRADE,
    Stream.DEPTH: FrameKind.PUSH_DEPTH,
    Stream.KLINE: FrameKind.PUSH_KLINE,
}


@dataclass(frozen=True, slots=True)
class Welcome:
    """``{"code":200,"msg":"ws connect success"}``: sent first on every connection."""

    kind: ClassVar[FrameKind] = FrameKind.NOTICE

    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Plain prose from the server, such as the stock greeting; informational, never an error."""

    kind: ClassVar[FrameKind] = FrameKind.NOTICE

    text: str


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    """A subscribe request was accepted (which does not mean data will come)."""

    kind: ClassVar[FrameKind] = FrameKind.ACK

    stream: Stream
    trace: str | None


@dataclass(frozen=True, slots=True)
class UnsubscribeAck:
    """An unsubscribe request was accepted (11010)."""

    kind: ClassVar[FrameKind] = FrameKind.ACK

    trace: str | None


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """The server answered a heartbeat that asked for an answer (10011)."""

    kind: ClassVar[FrameKind] = FrameKind.ACK

    trace: str | None


@dataclass(frozen=True, slots=True)
class Push:
    """Market data: ``payload`` is the frame's ``data`` object, not yet normalised."""

    stream: Stream
    payload: dict[str, Any]
    raw: str

    @property
    def kind(self) -> FrameKind:
        """``push_trade``, ``push_depth`` or ``push_kline``."""
        return _PUSH_KIND[self.stream]


@dataclass(frozen=True, slots=True)
class VendorError:
    """An error frame (500-521), possibly behind ``Subscribe fail:``, or the bare ``Param not json``."""

    kind: ClassVar[FrameKind] = FrameKind.ERROR

    code: int
    name: str
    recovery: Recovery
    message: str
    trace: str | None
    raw: str

    @property
    def terminal(self) -> bool:
        """Whether reconnecting cannot fix it."""
        return self.recovery is Recovery.TERMINAL


@dataclass(frozen=True, slots=True)
class SubscribeRejected:
    """``Subscribe fail: <prose>`` without JSON: a wrong business or an unpurchased market.

    It is an answer, not a reason to resend (protocol page).
    """

    kind: ClassVar[FrameKind] = FrameKind.ERROR

    text: str


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """Well-formed JSON with a code the protocol page does not list."""

    kind: ClassVar[FrameKind] = FrameKind.GARBAGE

    code: int
    raw: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """A frame that cannot be understood; ``reason`` is a short, stable label."""

    kind: ClassVar[FrameKind] = FrameKind.GARBAGE

    reason: str
    raw: str


ServerEvent = (
    Welcome
    | Notice
    | SubscribeAck
    | UnsubscribeAck
    | HeartbeatAck
    | Push
    | VendorError
    | SubscribeRejected
    | UnknownFrame
    | Garbage
)


@dataclass(slots=True)
class Record:
    """A push became a record: publish it. ``raw`` is the frame, for a dead letter if encoding fails.

    One per push, so not frozen (see ``bridge.records``); nothing changes it after construction.
    """

    record: MarketRecord
    raw: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame or payload could not become market data: publish the dead letter, go on."""

    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class GapClosed:
    """Data flows again after an interval without it (or the bridge stops with one open): publish the gap."""

    gap: GapRecord


@dataclass(frozen=True, slots=True)
class Subscribed:
    """Every subscription of the connection is acknowledged: the codes count as subscribed."""


@dataclass(frozen=True, slots=True)
class StaleFeed:
    """No push for ``silent_for`` seconds on an open socket; ``reconnect`` says whether the policy replaces it."""

    silent_for: float
    reconnect: bool


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The connection ends (or ended): why, the vendor code or HTTP status if any, and whether to retry.

    ``retry`` is False for a terminal vendor error or refused handshake: no reconnect can fix it.
    ``detail`` is a human explanation for the log line, never containing the key.
    """

    cause: Cause
    code: int | None = None
    retry: bool = True
    detail: str = ""


DataOutcome = Record | Rejected | GapClosed
"""The outcomes that carry data to publish; the feed hands them to its ``emit`` port."""

Outcome = Record | Rejected | GapClosed | Subscribed | StaleFeed | Disconnect | ServerEvent
"""Everything a session returns: the data outcomes, the connection's turns, and frame events worth a log line."""
