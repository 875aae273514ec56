"""The gateway's limits and the simulator's fault modes, decided with no I/O and no clock.

Theory of operation
-------------------
The vendor's gateway sits in front of the reply logic of :mod:`bridge.simulator.replies`: it
counts frames, cuts clients and sometimes misbehaves. :class:`Gateway` is that layer as a plain
object. The server hands it every client frame with the monotonic time of receipt
(:meth:`Gateway.receive`), asks it after every push sent whether something follows
(:meth:`Gateway.pushed`) and, every pacer tick, whether a connection's heartbeat is overdue
(:meth:`Gateway.overdue`). It answers with values (:class:`Verdict`, :class:`AfterPush`) that
the server carries out; nothing here awaits, reads a clock or touches a socket.

A client frame passes these checks, in this order (the first that applies decides):

1. every frame counts in the key's rolling window, whose peak is
   ``max_frames_in_window_per_key`` (the simulator accepts one key, so "per key" is over all
   its connections); a connection already cut is answered nothing more;
2. the frame budget (protocol page: 60 frames per minute per connection, everything counted):
   a frame that makes more than ``frame_limit`` in the rolling ``frame_window`` gets 501 and a
   cut; a heartbeat (10010) resets the heartbeat clock;
3. subscribes (10000/10003/10006) are numbered over the server's whole life, whether valid or
   not; the ``fail_subscribe_nth`` one gets 501 and a cut, the ``subscribe_fail_505_nth`` one the
   prefixed 505 and changes nothing;
4. everything else is :func:`~bridge.simulator.replies.reply_to`, with the code cap.

Windows are half-open like the bridge's own budget (``bridge.protocol.budget``): a frame at ``t``
counts for every ``now`` with ``t <= now < t + window``.

A handshake that carries the right key is refused with ``refuse_handshake_status`` while fewer
than ``refuse_handshakes`` have been (every one when that is ``None``): :meth:`Gateway.refusal`.

Pushes are counted per connection: after every ``garbage_every`` of them one bad frame follows,
its kind cycling through :data:`GARBAGE_KINDS`, and after ``close_after_pushes`` the connection
is aborted (the garbage, when both fall on the same push, goes first).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import orjson

from bridge.protocol.codes import RequestCode, ResponseCode
from bridge.records import Stream
from bridge.simulator.replies import (
    PRODUCTION_CODE_LIMIT,
    SUBSCRIBE_CODES,
    ClientInfo,
    error_frame,
    note,
    parse_request,
    reply_to,
    request_code,
    subscribe_fail_frame,
    trace_of,
)

FREQUENCY_LIMIT_MESSAGE: Final = "Request frequency exceed the limit\uff1a60 times per minute"
"""The 501 message, full-width colon included (``frames/error_501.json``)."""
HEARTBEAT_TIMEOUT_MESSAGE: Final = "Websocket heartbeat timeout"
DEFAULT_FRAME_LIMIT: Final = 60
DEFAULT_FRAME_WINDOW: Final = 60.0
DEFAULT_MAX_CODES: Final = PRODUCTION_CODE_LIMIT
KEY_WINDOW_CAP: Final = 10_000
"""Frame times the per-key window keeps; a key sending more than this in one window reads as this."""

GarbageKind = Literal["not_json", "invalid_json", "binary", "unknown_code", "bad_price"]
GARBAGE_KINDS: Final[tuple[GarbageKind, ...]] = ("not_json", "invalid_json", "binary", "unknown_code", "bad_price")
"""The bad frames ``garbage_every`` sends, in the order they come on a connection."""
NOT_JSON_GARBAGE: Final = "#!garbage {[ not json ]"
"""Plain text that is no prose: the brackets keep a client from taking it for a vendor notice."""
BINARY_GARBAGE: Final = b"\x00\x01\xfe\xff"
UNKNOWN_CODE_GARBAGE: Final = '{"code":10099,"data":{}}'

Fault = Literal["budget", "fail_subscribe", "subscribe_505"]
"""Why a :class:`Verdict` departs from the plain reply logic."""


class RollingCount:
    """Events in a rolling, half-open window of ``window`` seconds, and the most ever seen in one.

    Times are passed in and must not go backwards (a time earlier than the last is taken as the
    last). At most ``cap`` times are kept, so a count above ``cap`` reads as ``cap``.
    """

    def __init__(self, window: float, cap: int | None = None) -> None:
        if not window > 0:
            raise ValueError(f"window must be > 0, not {window}")
        if cap is not None and cap < 1:
            raise ValueError(f"cap must be >= 1, not {cap}")
        self.window = window
        self.cap = cap
        self.peak = 0
        """The largest count :meth:`add` has returned."""
        self._times: deque[float] = deque()

    def add(self, now: float) -> int:
        """Count an event at ``now``; returns the events in the window ending at ``now``, this one included."""
        times = self._times
        if times and now < times[-1]:
            now = times[-1]
        self._expire(now)
        if self.cap is not None and len(times) >= self.cap:
            times.popleft()
        times.append(now)
        count = len(times)
        self.peak = max(self.peak, count)
        return count

    def count(self, now: float) -> int:
        """Events in the window ending at ``now``."""
        self._expire(now)
        return len(self._times)

    def _expire(self, now: float) -> None:
        times = self._times
        # The same comparison as the bridge's FrameBudget, so both agree to the last float.
        while times and times[0] + self.window <= now:
            times.popleft()


@dataclass(frozen=True, slots=True)
class GatewayRules:
    """The limits and fault modes in force, validated at construction; ``0`` or ``None`` turns one off.

    The meaning of each is in this module's docstring; the handshake refusals are decided by
    :meth:`Gateway.refusal`.
    """

    frame_limit: int = DEFAULT_FRAME_LIMIT
    """Client frames one connection may send in ``frame_window``; more gets 501 and a cut. 0: no limit."""
    frame_window: float = DEFAULT_FRAME_WINDOW
    """Seconds of the rolling frame window, enforced or only measured per key."""
    max_codes_per_connection: int = DEFAULT_MAX_CODES
    """Distinct codes one connection may hold over all streams; a subscribe past it gets 505. 0: no cap."""
    heartbeat_timeout: float | None = None
    """Seconds without a heartbeat (from the handshake, then from the last one) before 513 and a close."""
    fail_subscribe_nth: int | None = None
    """The Nth subscribe over the server's life gets 501 and a cut connection."""
    subscribe_fail_505_nth: int | None = None
    """The Nth subscribe over the server's life gets the prefixed 505 and adds nothing."""
    close_after_pushes: int | None = None
    """Abort each connection (no close frame) once it has been sent this many pushes."""
    garbage_every: int | None = None
    """Send one bad frame after every N pushes of a connection, kinds in turn."""
    refuse_handshake_status: int | None = None
    """Refuse handshakes that carry the right key with this HTTP status (400..599)."""
    refuse_handshakes: int | None = None
    """How many handshakes ``refuse_handshake_status`` refuses; ``None``: every one."""

    def __post_init__(self) -> None:
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
    def code_limit_text(self) -> int:
        """The number a 505 names: the cap in force, or production's 600 when there is none."""
        return self.max_codes_per_connection if self.max_codes_per_connection > 0 else PRODUCTION_CODE_LIMIT


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about one client frame: send ``reply`` (if any), then close when ``close``."""

    reply: str | None
    close: bool = False
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class AfterPush:
    """What follows a push: a bad frame of kind ``garbage`` (about ``symbol``), then an abort if ``abort``."""

    garbage: GarbageKind | None = None
    symbol: str = ""
    abort: bool = False


class Line:
    """The gateway's view of one connection: its frame window, heartbeat clock and push count."""

    def __init__(self, info: ClientInfo, opened: float, rules: GatewayRules) -> None:
        self.info = info
        self.last_heartbeat = opened
        """Monotonic time of the handshake, then of the last heartbeat."""
        self.pushes = 0
        """Pushes sent on this connection, all streams."""
        self.garbage_sent = 0
        self.cut = False
        """The gateway has decided to close this connection; it answers nothing more."""
        # Enforced windows need one frame more than the limit to see it exceeded, and no more.
        self.frames = RollingCount(rules.frame_window, rules.frame_limit + 1) if rules.frame_limit > 0 else None


class Gateway:
    """The server-wide decisions: the budget, the subscribe counters, heartbeats, pushes.

    Attributes:
        subscribes: subscribe frames numbered so far, over the server's life.
        refused: handshakes with the right key refused so far by ``refuse_handshake_status``.
        key_frames: the rolling window of every client frame of the key; its ``peak`` is the
            most frames the key sent in any ``frame_window``.
    """

    def __init__(self, rules: GatewayRules) -> None:
        self.rules = rules
        self.subscribes = 0
        self.refused = 0
        self.key_frames = RollingCount(rules.frame_window, KEY_WINDOW_CAP)

    @property
    def watches_pushes(self) -> bool:
        """Whether :meth:`pushed` can answer anything but "nothing follows" (a fault counts pushes)."""
        return self.rules.garbage_every is not None or self.rules.close_after_pushes is not None

    def refusal(self) -> int | None:
        """The HTTP status to refuse a handshake that carries the right key with, or ``None`` to accept it."""
        status, budget = self.rules.refuse_handshake_status, self.rules.refuse_handshakes
        if status is None or (budget is not None and self.refused >= budget):
            return None
        self.refused += 1
        return status

    def open(self, info: ClientInfo, now: float) -> Line:
        """A connection whose handshake completed at monotonic time ``now``."""
        return Line(info, now, self.rules)

    def receive(self, line: Line, message: str | bytes, *, received_at: datetime, now: float) -> Verdict:
        """Judge one client frame received at monotonic ``now`` (wall clock ``received_at``).

        Changes ``line.info`` only when the frame is accepted, and marks the line cut when the
        verdict closes it.
        """
        rules = self.rules
        self.key_frames.add(now)
        request = parse_request(message)
        note(line.info, request, received_at=received_at, monotonic=now)
        if line.cut:
            return Verdict(None)
        if line.frames is not None and line.frames.add(now) > rules.frame_limit:
            return self._cut(line, trace_of(request), "budget")
        code = request_code(request)
        if code == RequestCode.HEARTBEAT:
            line.last_heartbeat = now
        if code in SUBSCRIBE_CODES:
            self.subscribes += 1
            if self.subscribes == rules.fail_subscribe_nth:
                return self._cut(line, trace_of(request), "fail_subscribe")
            if self.subscribes == rules.subscribe_fail_505_nth:
                return Verdict(subscribe_fail_frame(trace_of(request), rules.code_limit_text), fault="subscribe_505")
        return Verdict(reply_to(line.info, request, max_codes=rules.max_codes_per_connection))

    def overdue(self, line: Line, now: float) -> str | None:
        """The 513 frame when ``line`` sent no heartbeat for ``heartbeat_timeout``, marking it cut; else ``None``."""
        timeout = self.rules.heartbeat_timeout
        if timeout is None or line.cut or now - line.last_heartbeat < timeout:
            return None
        line.cut = True
        return error_frame("", 513, HEARTBEAT_TIMEOUT_MESSAGE)

    def pushed(self, line: Line, stream: Stream, symbol: str) -> AfterPush:
        """Count a push of ``symbol`` on ``stream`` sent on ``line``, and say what follows it."""
        rules = self.rules
        line.pushes += 1
        garbage: GarbageKind | None = None
        if rules.garbage_every is not None and line.pushes % rules.garbage_every == 0:
            garbage = GARBAGE_KINDS[line.garbage_sent % len(GARBAGE_KINDS)]
            line.garbage_sent += 1
        abort = line.pushes == rules.close_after_pushes
        if abort:
            line.cut = True
        if garbage is None and not abort:
            return AfterPush()
        # A bad price is a trade push: of this code when it was one, else of a code traded here.
        trades = line.info.trades
        if stream is not Stream.TRADE and trades and symbol not in trades:
            symbol = next(iter(trades))
        return AfterPush(garbage, symbol, abort)

    def _cut(self, line: Line, trace: str, fault: Fault) -> Verdict:
        line.cut = True
        return Verdict(error_frame(trace, 501, FREQUENCY_LIMIT_MESSAGE), close=True, fault=fault)


def garbage_frame(kind: GarbageKind, symbol: str, now_ms: int) -> str | bytes:
    """The bad frame of ``kind`` (``bytes`` for a binary frame), naming ``symbol`` where it has one."""
    if kind == "not_json":
        return NOT_JSON_GARBAGE
    if kind == "invalid_json":
        # A trade push cut off in the middle, as a truncated write would leave it.
        return f'{{"code":{int(ResponseCode.PUSH_TRADE)},"data":{{"s":{orjson.dumps(symbol).decode()},"t":'
    if kind == "binary":
        return BINARY_GARBAGE
    if kind == "unknown_code":
        return UNKNOWN_CODE_GARBAGE
    # Well-formed in every way but the price, which no decimal parser accepts.
    data = {"p": "abc", "s": symbol, "t": now_ms, "td": 0, "v": "1", "vw": "1"}
    return orjson.dumps({"code": int(ResponseCode.PUSH_TRADE), "data": data}).decode()
