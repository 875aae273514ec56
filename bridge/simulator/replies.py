"""The server's side of one connection with no I/O: a client frame in, a reply and new state out.

This is where the simulator's reading of the vendor protocol lives (protocol page, "Client to
server" and "Server to client"); :mod:`bridge.simulator.server` only moves frames. Time is an
argument, nothing here awaits, and bad input never raises: it becomes the vendor's error frame.

* 10000 / 10003 take ``{"codes":"A,B"}`` and 10006 ``{"arr":[{"type":1,"codes":"A,B"}]}``;
  subscriptions accumulate (a repeated code changes nothing) and are acked 10001/10004/10007
  with the request's ``trace``.
* 11000 / 11001 / 11002 drop codes and are acked 11010; for klines ``klineTypes`` ("1,2")
  names the intervals, and without it every interval of those codes goes.
* 10010 is answered 10011 only when ``data.ack`` is 1.
* A frame that is not a JSON object gets 515 (bare text ``Param not json`` on stock); a missing
  ``data``, ``codes`` or ``arr`` gets 507 and a wrong one 506, as ``{"traceId":..,"code":..,
  "msg":..}`` with the vendor's full-width colon. A refused frame changes nothing.
* With a code cap (``max_codes``), a subscribe that would leave the connection holding more
  distinct codes than the cap, over all streams, is refused with the prefixed text frame
  ``Subscribe fail: {"traceId":..,"code":505,"msg":"Single WS subscribe exceeds the limit 600"}``
  (``frames/error_505_prefixed.txt``, the number being the cap) and adds nothing.

:func:`answer` is the whole of it; :mod:`bridge.simulator.gateway` uses the pieces it is made of
(:func:`parse_request`, :func:`note`, :func:`reply_to`) to put the gateway's limits and the fault
modes in front of the same reply logic.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from bridge.protocol.codes import KlineInterval, RequestCode, ResponseCode
from bridge.records import Stream
from bridge.simulator.market import BUSINESSES

GREETING = "You have permission to subscribe to all market data"
"""The plain-text first frame on ``business=stock`` (``frames/plaintext_greeting.txt``)."""
WELCOME = orjson.dumps({"code": int(ResponseCode.WELCOME), "msg": "ws connect success"}).decode()
"""The first JSON frame of every connection (``frames/welcome.json``)."""
PARAM_NOT_JSON = "Param not json"
SUBSCRIBE_FAIL_PREFIX = "Subscribe fail: "
"""The text before the JSON of a refused subscribe (``frames/error_505_prefixed.txt``)."""
PRODUCTION_CODE_LIMIT = 600
"""The products one connection may hold in production, as the 505 message states it."""

FRAME_HISTORY = 256
"""Client frames remembered per connection: enough to judge a 60-frames-per-minute budget."""

_SUBSCRIBE: dict[int, tuple[Stream, ResponseCode]] = {
    RequestCode.SUBSCRIBE_TRADE: (Stream.TRADE, ResponseCode.SUBSCRIBE_TRADE_ACK),
    RequestCode.SUBSCRIBE_DEPTH: (Stream.DEPTH, ResponseCode.SUBSCRIBE_DEPTH_ACK),
    RequestCode.SUBSCRIBE_KLINE: (Stream.KLINE, ResponseCode.SUBSCRIBE_KLINE_ACK),
}
_UNSUBSCRIBE: dict[int, Stream] = {
    RequestCode.UNSUBSCRIBE_TRADE: Stream.TRADE,
    RequestCode.UNSUBSCRIBE_DEPTH: Stream.DEPTH,
    RequestCode.UNSUBSCRIBE_KLINE: Stream.KLINE,
}
SUBSCRIBE_CODES: frozenset[int] = frozenset(_SUBSCRIBE)
"""The request codes that subscribe (10000, 10003, 10006)."""
# The vendor's error messages use a full-width colon (U+FF1A, frames/error_507.json).
_VENDOR_COLON = "\uff1a"


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """One frame a client sent: when (wall clock, UTC, and monotonic) and its code, if any."""

    received_at: datetime
    monotonic: float
    code: int | None


@dataclass(eq=False, slots=True)
class ClientInfo:
    """What the server knows about one connection; only :func:`answer` changes it.

    Subscriptions are insertion-ordered sets (dicts to ``None``), so pushes go round-robin in
    the order codes were subscribed. ``frames`` keeps the last :data:`FRAME_HISTORY` client
    frames with their times, so a 60-frames-per-minute budget can be judged from it.
    """

    id: int
    business: str
    opened_at: datetime
    frames: deque[ClientFrame] = field(default_factory=lambda: deque(maxlen=FRAME_HISTORY))
    frames_received: int = 0
    trades: dict[str, None] = field(default_factory=dict)
    depth: dict[str, None] = field(default_factory=dict)
    klines: dict[tuple[str, KlineInterval], None] = field(default_factory=dict)

    @property
    def codes(self) -> frozenset[str]:
        """Every code subscribed on any stream."""
        return frozenset(self.trades) | frozenset(self.depth) | {code for code, _ in self.klines}

    @property
    def serves_data(self) -> bool:
        """Whether the business has data; otherwise subscriptions are acked and stay silent."""
        return self.business in BUSINESSES

    def wants(self, stream: Stream, code: str, interval: KlineInterval | None = None) -> bool:
        """Whether ``code`` (with ``interval`` for klines) is subscribed on ``stream`` now."""
        if stream is Stream.TRADE:
            return code in self.trades
        if stream is Stream.DEPTH:
            return code in self.depth
        return interval is not None and (code, interval) in self.klines


class _Refusal(Exception):
    """A client frame the vendor answers with an error frame (code, message, optional text prefix)."""

    def __init__(self, code: int, message: str, prefix: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.prefix = prefix

    @classmethod
    def lost(cls, name: str) -> _Refusal:
        """507, a required parameter is missing; worded as in ``frames/error_507.json``."""
        return cls(507, f"Param lost{_VENDOR_COLON}{name}")

    @classmethod
    def bad(cls, name: str) -> _Refusal:
        """506, a parameter has the wrong type or value."""
        return cls(506, f"Param error{_VENDOR_COLON}{name}")


def answer(
    info: ClientInfo, message: str | bytes, *, received_at: datetime, monotonic: float, max_codes: int = 0
) -> str | None:
    """Record one client frame, apply it to ``info`` and return the reply frame, if any.

    Args:
        info: the connection's state, changed in place (only when the frame is accepted).
        message: the frame as received, text or binary.
        received_at: aware UTC wall-clock time of receipt.
        monotonic: the monotonic clock at receipt, for budget windows.
        max_codes: the most distinct codes the connection may hold; 0 means no cap.

    Returns:
        The text frame to send back, or ``None`` (a heartbeat that asked for no ack).
    """
    request = parse_request(message)
    note(info, request, received_at=received_at, monotonic=monotonic)
    return reply_to(info, request, max_codes=max_codes)


def parse_request(message: str | bytes) -> dict[str, Any] | None:
    """The frame as a JSON object, or ``None`` when it is anything else (bad JSON, an array, ...)."""
    try:
        parsed: Any = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def request_code(request: Mapping[str, Any] | None) -> int | None:
    """The integer ``code`` of a parsed request, or ``None`` (missing, a bool, not a number)."""
    code = request.get("code") if request is not None else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def trace_of(request: Mapping[str, Any] | None) -> str:
    """The request's ``trace`` when it is a string, else ``""`` (what error frames then echo)."""
    trace = request.get("trace") if request is not None else None
    return trace if isinstance(trace, str) else ""


def note(info: ClientInfo, request: Mapping[str, Any] | None, *, received_at: datetime, monotonic: float) -> None:
    """Count one client frame in ``info`` and remember its times and code."""
    info.frames_received += 1
    info.frames.append(ClientFrame(received_at, monotonic, request_code(request)))


def reply_to(info: ClientInfo, request: Mapping[str, Any] | None, *, max_codes: int = 0) -> str | None:
    """Apply a parsed request (``None``: not a JSON object) to ``info`` and return the reply, if any.

    Args:
        info: the connection's state, changed in place only when the request is accepted.
        request: the frame as :func:`parse_request` returned it.
        max_codes: the most distinct codes the connection may hold; 0 means no cap.
    """
    if request is None:
        # On stock the vendor answers in bare text (protocol page); no trace can be echoed.
        return PARAM_NOT_JSON if info.business == "stock" else error_frame("", 515, PARAM_NOT_JSON)
    trace = trace_of(request)
    try:
        return _apply(info, request, request.get("code"), trace, max_codes)
    except _Refusal as refusal:
        return refusal.prefix + error_frame(trace, refusal.code, refusal.message)


def ack_frame(code: ResponseCode, trace: str) -> str:
    """An ack (10001/10004/10007/10011/11010): ``{"code":..,"trace":..,"msg":"ok"}``."""
    return orjson.dumps({"code": int(code), "trace": trace, "msg": "ok"}).decode()


def error_frame(trace: str, code: int, message: str) -> str:
    """An error frame; it names the trace ``traceId``, unlike acks (protocol page)."""
    return orjson.dumps({"traceId": trace, "code": code, "msg": message}).decode()


def subscribe_fail_frame(trace: str, limit: int = PRODUCTION_CODE_LIMIT) -> str:
    """The 505 refusal of a subscribe, behind its text prefix (``frames/error_505_prefixed.txt``)."""
    return SUBSCRIBE_FAIL_PREFIX + error_frame(trace, 505, _over_limit_message(limit))


def _over_limit_message(limit: int) -> str:
    return f"Single WS subscribe exceeds the limit {limit}"


def _apply(info: ClientInfo, request: Mapping[str, Any], code: object, trace: str, max_codes: int) -> str | None:
    data = request.get("data")
    if code == RequestCode.HEARTBEAT:
        if isinstance(data, Mapping) and data.get("ack") == 1:
            return ack_frame(ResponseCode.HEARTBEAT_ACK, trace)
        return None
    if not isinstance(code, int) or isinstance(code, bool):
        raise _Refusal.bad("code")
    if code not in _SUBSCRIBE and code not in _UNSUBSCRIBE:
        raise _Refusal.bad(f"code {code}")
    if data is None:
        raise _Refusal.lost("data")
    if not isinstance(data, Mapping):
        raise _Refusal.bad("data")
    subscribe = _SUBSCRIBE.get(code)
    if subscribe is not None:
        stream, ack = subscribe
        _subscribe(info, stream, data, max_codes)
        return ack_frame(ack, trace)
    _unsubscribe(info, _UNSUBSCRIBE[code], data)
    return ack_frame(ResponseCode.UNSUBSCRIBE_ACK, trace)


def _subscribe(info: ClientInfo, stream: Stream, data: Mapping[str, Any], max_codes: int) -> None:
    # Everything is parsed and checked before anything changes, so a refused frame changes nothing.
    if stream is Stream.KLINE:
        groups = data.get("arr")
        if groups is None:
            raise _Refusal.lost("arr")
        if not isinstance(groups, list) or not groups:
            raise _Refusal.bad("arr")
        wanted = [
            (code, _interval(group.get("type")))
            for group in (_mapping(item) for item in groups)
            for code in _codes(group)
        ]
        _check_cap(info, (code for code, _ in wanted), max_codes)
        info.klines.update(dict.fromkeys(wanted))
        return
    codes = _codes(data)
    _check_cap(info, codes, max_codes)
    table = info.trades if stream is Stream.TRADE else info.depth
    table.update(dict.fromkeys(codes))


def _check_cap(info: ClientInfo, codes: Iterable[str], max_codes: int) -> None:
    if max_codes <= 0:
        return
    held = info.codes
    if len(held | frozenset(codes)) > max_codes:
        raise _Refusal(505, _over_limit_message(max_codes), SUBSCRIBE_FAIL_PREFIX)


def _unsubscribe(info: ClientInfo, stream: Stream, data: Mapping[str, Any]) -> None:
    codes = _codes(data)
    if stream is Stream.KLINE:
        types = data.get("klineTypes")
        if types is None:
            dropped = [key for key in info.klines if key[0] in codes]
        else:
            intervals = [_interval(item.strip()) for item in str(types).split(",") if item.strip()]
            dropped = [(code, interval) for code in codes for interval in intervals]
        for key in dropped:
            info.klines.pop(key, None)
    else:
        table = info.trades if stream is Stream.TRADE else info.depth
        for code in codes:
            table.pop(code, None)


def _mapping(item: object) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise _Refusal.bad("arr")
    return item


def _codes(data: Mapping[str, Any]) -> list[str]:
    codes = data.get("codes")
    if codes is None:
        raise _Refusal.lost("codes")
    if not isinstance(codes, str):
        raise _Refusal.bad("codes")
    split = list(dict.fromkeys(code.strip() for code in codes.split(",") if code.strip()))
    if not split:
        raise _Refusal.bad("codes")
    return split


def _interval(value: object) -> KlineInterval:
    if value is None:
        raise _Refusal.lost("type")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return KlineInterval(value)
    raise _Refusal.bad("type")
