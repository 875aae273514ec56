"""The vendor's numeric vocabulary: request, response and error codes, intervals, handshake statuses.

Everything here is transcribed from docs/protocol/INFOWAY-WS.md ("as it really behaves"),
which corrects the seed document: pushes are 10002/10005/10008 (not the acks 10001/10004/10007),
and error frames carry ``traceId`` rather than ``trace``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.records import Stream


class RequestCode(enum.IntEnum):
    """Codes of frames the client sends."""

    SUBSCRIBE_TRADE = 10000
    SUBSCRIBE_DEPTH = 10003
    SUBSCRIBE_KLINE = 10006
    HEARTBEAT = 10010
    UNSUBSCRIBE_TRADE = 11000
    UNSUBSCRIBE_DEPTH = 11001
    UNSUBSCRIBE_KLINE = 11002


class ResponseCode(enum.IntEnum):
    """Codes of non-error frames the server sends."""

    WELCOME = 200
    SUBSCRIBE_TRADE_ACK = 10001
    PUSH_TRADE = 10002
    SUBSCRIBE_DEPTH_ACK = 10004
    PUSH_DEPTH = 10005
    SUBSCRIBE_KLINE_ACK = 10007
    PUSH_KLINE = 10008
    HEARTBEAT_ACK = 10011
    UNSUBSCRIBE_ACK = 11010


SUBSCRIBE_CODE: dict[Stream, RequestCode] = {
    Stream.TRADE: RequestCode.SUBSCRIBE_TRADE,
    Stream.DEPTH: RequestCode.SUBSCRIBE_DEPTH,
    Stream.KLINE: RequestCode.SUBSCRIBE_KLINE,
}
UNSUBSCRIBE_CODE: dict[Stream, RequestCode] = {
    Stream.TRADE: RequestCode.UNSUBSCRIBE_TRADE,
    Stream.DEPTH: RequestCode.UNSUBSCRIBE_DEPTH,
    Stream.KLINE: RequestCode.UNSUBSCRIBE_KLINE,
}
ACK_STREAM: dict[int, Stream] = {
    ResponseCode.SUBSCRIBE_TRADE_ACK: Stream.TRADE,
    ResponseCode.SUBSCRIBE_DEPTH_ACK: Stream.DEPTH,
    ResponseCode.SUBSCRIBE_KLINE_ACK: Stream.KLINE,
}
PUSH_STREAM: dict[int, Stream] = {
    ResponseCode.PUSH_TRADE: Stream.TRADE,
    ResponseCode.PUSH_DEPTH: Stream.DEPTH,
    ResponseCode.PUSH_KLINE: Stream.KLINE,
}


class KlineInterval(enum.IntEnum):
    """The kline ``type`` / ``ty`` values; :attr:`label` is the spelling in records and config."""

    MIN_1 = 1
    MIN_5 = 2
    MIN_15 = 3
    MIN_30 = 4
    HOUR_1 = 5
    HOUR_2 = 6
    HOUR_4 = 7
    DAY_1 = 8
    WEEK_1 = 9
    MONTH_1 = 10
    QUARTER_1 = 11
    YEAR_1 = 12

    @property
    def label(self) -> str:
        """The short name used in records and accepted in config, e.g. ``1m``, ``1h``, ``1d``."""
        return _INTERVAL_LABELS[self]

    @classmethod
    def parse(cls, value: int | str) -> KlineInterval:
        """Accept the vendor number (``5``, ``"5"``) or a label (``"1h"``).

        Raises:
            ValueError: naming the accepted spellings.
        """
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        text = str(value).strip()
        if text.isdigit():
            return cls(int(text))
        for interval, label in _INTERVAL_LABELS.items():
            if label == text:
                return interval
        raise ValueError(f"unknown kline interval {value!r}: use 1-12 or one of {', '.join(_INTERVAL_LABELS.values())}")


_INTERVAL_LABELS: dict[KlineInterval, str] = {
    KlineInterval.MIN_1: "1m",
    KlineInterval.MIN_5: "5m",
    KlineInterval.MIN_15: "15m",
    KlineInterval.MIN_30: "30m",
    KlineInterval.HOUR_1: "1h",
    KlineInterval.HOUR_2: "2h",
    KlineInterval.HOUR_4: "4h",
    KlineInterval.DAY_1: "1d",
    KlineInterval.WEEK_1: "1w",
    KlineInterval.MONTH_1: "1M",
    KlineInterval.QUARTER_1: "1Q",
    KlineInterval.YEAR_1: "1y",
}


class Recovery(enum.StrEnum):
    """What the bridge does about a vendor error."""

    RECONNECT = "reconnect"
    """Recoverable: count it, reconnect with backoff, resubscribe."""
    REPORT = "report"
    """Our request or configuration was wrong: report it with the trace; the socket stays."""
    TERMINAL = "terminal"
    """No retry can fix it: stop that connection and say why."""

    @property
    def advice(self) -> str:
        """What the bridge does about it, for the log line an operator reads."""
        return _ADVICE[self]


_ADVICE = {
    Recovery.RECONNECT: "reconnecting with backoff",
    Recovery.REPORT: "not resent (it would be refused again): check the subscription configuration",
    Recovery.TERMINAL: "stopping this connection (a reconnect cannot fix it)",
}


@dataclass(frozen=True, slots=True)
class VendorErrorInfo:
    """One entry of the error catalogue."""

    code: int
    name: str
    meaning: str
    recovery: Recovery

    @property
    def terminal(self) -> bool:
        """Whether a reconnect cannot fix it."""
        return self.recovery is Recovery.TERMINAL


def _entry(code: int, name: str, meaning: str, recovery: Recovery) -> tuple[int, VendorErrorInfo]:
    return code, VendorErrorInfo(code, name, meaning, recovery)


#: Error frames 500-521 (protocol page, "Error codes").
VENDOR_ERRORS: dict[int, VendorErrorInfo] = dict(
    [
        _entry(500, "server_error", "server error", Recovery.RECONNECT),
        _entry(501, "frequency_limit_minute", "more than 60 frames in a minute", Recovery.RECONNECT),
        _entry(502, "frequency_limit_day", "daily request limit reached", Recovery.TERMINAL),
        _entry(503, "kline_limit", "kline subscription count over the plan's limit", Recovery.REPORT),
        _entry(504, "depth_limit", "book depth over the plan's limit", Recovery.REPORT),
        _entry(505, "connection_code_limit", "too many codes on one connection", Recovery.REPORT),
        _entry(506, "param_error", "request parameter error (a bridge bug)", Recovery.REPORT),
        _entry(507, "param_lost", "request parameter missing (a bridge bug)", Recovery.REPORT),
        _entry(508, "key_expired", "API key expired", Recovery.TERMINAL),
        _entry(509, "key_invalid", "API key invalid", Recovery.TERMINAL),
        _entry(510, "key_empty", "API key empty", Recovery.TERMINAL),
        _entry(511, "key_blacklisted", "API key blacklisted", Recovery.TERMINAL),
        _entry(512, "too_many_connections", "too many connections for the key", Recovery.TERMINAL),
        _entry(513, "heartbeat_timeout", "no heartbeat arrived in time", Recovery.RECONNECT),
        _entry(514, "wrong_url", "wrong WebSocket URL", Recovery.TERMINAL),
        _entry(515, "param_not_json", "request was not JSON (a bridge bug)", Recovery.RECONNECT),
        _entry(516, "all_products_limit", "all products over the plan's limit", Recovery.TERMINAL),
        _entry(517, "handshake_key_missing", "handshake without an API key", Recovery.TERMINAL),
        _entry(518, "handshake_key_unknown", "handshake with an unknown API key", Recovery.TERMINAL),
        _entry(519, "no_permission", "the key has no permission for this business", Recovery.TERMINAL),
        _entry(520, "already_connected", "product code wrong or already connected", Recovery.TERMINAL),
        _entry(521, "max_connections", "handshake over the maximum connections", Recovery.TERMINAL),
    ]
)

#: Refused handshakes, by HTTP status (protocol page, "Endpoint and authentication").
HANDSHAKE_STATUSES: dict[int, VendorErrorInfo] = dict(
    [
        _entry(401, "unauthorized", "the API key was refused", Recovery.TERMINAL),
        _entry(404, "not_found", "no such endpoint (check source.url)", Recovery.TERMINAL),
        _entry(429, "quota", "request rate over the plan's quota", Recovery.RECONNECT),
        _entry(499, "client_closed", "proxy saw the client close", Recovery.RECONNECT),
        _entry(524, "origin_timeout", "proxy timed out reaching the origin", Recovery.RECONNECT),
    ]
)


def vendor_error_info(code: int) -> VendorErrorInfo:
    """The catalogue entry for an error frame's code; unknown codes are recoverable by default.

    An unknown code in the 500s is treated as a server error: reconnecting is the cautious
    answer that neither hammers (backoff applies) nor gives up on a feed for a code we never saw.
    """
    known = VENDOR_ERRORS.get(code)
    if known is not None:
        return known
    return VendorErrorInfo(code, "unknown", "error code not in the catalogue", Recovery.RECONNECT)


def handshake_status_info(status: int) -> VendorErrorInfo:
    """Classify a refused handshake by HTTP status: 5xx are recoverable, other 4xx terminal."""
    known = HANDSHAKE_STATUSES.get(status)
    if known is not None:
        return known
    if 500 <= status <= 599:
        return VendorErrorInfo(status, "server_error", "gateway or server error", Recovery.RECONNECT)
    return VendorErrorInfo(status, "refused", "handshake refused", Recovery.TERMINAL)
