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
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
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
    """A client frame the vendor answers with an error frame (code and message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def lost(cls, name: str) -> _Refusal:
        """507, a required parameter is missing; worded as in ``frames/error_507.json``."""
        return cls(507, f"Param lost{_VENDOR_COLON}{name}")

    @classmethod
    def bad(cls, name: str) -> _Refusal:
        """506, a parameter has the wrong type or value."""
        return cls(506, f"Param error{_VENDOR_COLON}{name}")


def answer(info: ClientInfo, message: str | bytes, *, received_at: datetime, monotonic: float) -> str | None:
    """Record one client frame, apply it to ``info`` and return the reply frame, if any.

    Args:
        info: the connection's state, changed in place (only when the frame is accepted).
        message: the frame as received, text or binary.
        received_at: aware UTC wall-clock time of receipt.
        monotonic: the monotonic clock at receipt, for budget windows.

    Returns:
        The text frame to send back, or ``None`` (a heartbeat that asked for no ack).
    """
    request = _parse_object(message)
    code = request.get("code") if request is not None else None
    info.frames_received += 1
    info.frames.append(
        ClientFrame(received_at, monotonic, code if isinstance(code, int) and not isinstance(code, bool) else None)
    )
    if request is None:
        # On stock the vendor answers in bare text (protocol page); no trace can be echoed.
        return PARAM_NOT_JSON if info.business == "stock" else error_frame("", 515, PARAM_NOT_JSON)
    trace = request.get("trace")
    trace_text = trace if isinstance(trace, str) else ""
    try:
        return _apply(info, request, code, trace_text)
    except _Refusal as refusal:
        return error_frame(trace_text, refusal.code, refusal.message)


def ack_frame(code: ResponseCode, trace: str) -> str:
    """An ack (10001/10004/10007/10011/11010): ``{"code":..,"trace":..,"msg":"ok"}``."""
    return orjson.dumps({"code": int(code), "trace": trace, "msg": "ok"}).decode()


def error_frame(trace: str, code: int, message: str) -> str:
    """An error frame; it names the trace ``traceId``, unlike acks (protocol page)."""
    return orjson.dumps({"traceId": trace, "code": code, "msg": message}).decode()


def _apply(info: ClientInfo, request: Mapping[str, Any], code: object, trace: str) -> str | None:
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
        _subscribe(info, stream, data)
        return ack_frame(ack, trace)
    _unsubscribe(info, _UNSUBSCRIBE[code], data)
    return ack_frame(ResponseCode.UNSUBSCRIBE_ACK, trace)


def _subscribe(info: ClientInfo, stream: Stream, data: Mapping[str, Any]) -> None:
    # Everything is parsed before anything changes, so a refused frame changes nothing.
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
        info.klines.update(dict.fromkeys(wanted))
    elif stream is Stream.TRADE:
        info.trades.update(dict.fromkeys(_codes(data)))
    else:
        info.depth.update(dict.fromkeys(_codes(data)))


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


def _parse_object(message: str | bytes) -> dict[str, Any] | None:
    try:
        parsed: Any = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


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
