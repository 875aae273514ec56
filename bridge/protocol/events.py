"""What a vendor frame means, as plain values (in the manner of h11's events).

The classifier turns every frame, good or bad, into exactly one of these; it never raises for
bad input. ``raw`` is kept where the frame may need to travel to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.protocol.codes import Recovery
from bridge.records import Stream


@dataclass(frozen=True, slots=True)
class Welcome:
    """``{"code":200,"msg":"ws connect success"}``: sent first on every connection."""

    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Plain prose from the server, such as the stock greeting; informational, never an error."""

    text: str


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    """A subscribe request was accepted (which does not mean data will come)."""

    stream: Stream
    trace: str | None


@dataclass(frozen=True, slots=True)
class UnsubscribeAck:
    """An unsubscribe request was accepted (11010)."""

    trace: str | None


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """The server answered a heartbeat that asked for an answer (10011)."""

    trace: str | None


@dataclass(frozen=True, slots=True)
class Push:
    """Market data: ``payload`` is the frame's ``data`` object, not yet normalised."""

    stream: Stream
    payload: dict[str, Any]
    raw: str


@dataclass(frozen=True, slots=True)
class VendorError:
    """An error frame (500-521), possibly behind ``Subscribe fail:``, or the bare ``Param not json``."""

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

    text: str


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """Well-formed JSON with a code the protocol page does not list."""

    code: int
    raw: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """A frame that cannot be understood; ``reason`` is a short, stable label."""

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
