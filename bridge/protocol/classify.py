"""Turn one WebSocket frame into one :mod:`~bridge.protocol.events` value, whatever it contains.

The vendor's wire has quirks the seed document does not show (protocol page): plain-text frames
on ``business=stock``, error JSON behind a ``Subscribe fail:`` prefix, a bare ``Param not json``
text for 515, and ``traceId`` instead of ``trace`` on errors. All of them are handled here, and
anything else (bad JSON, binary frames, oversized frames) becomes :class:`Garbage` with a reason:
this function never raises for bad input.
"""

from __future__ import annotations

from typing import Any

import orjson

from bridge.protocol.codes import ACK_STREAM, PUSH_STREAM, ResponseCode, vendor_error_info
from bridge.protocol.events import (
    Garbage,
    HeartbeatAck,
    Notice,
    Push,
    ServerEvent,
    SubscribeAck,
    SubscribeRejected,
    UnknownFrame,
    UnsubscribeAck,
    VendorError,
    Welcome,
)

DEFAULT_MAX_FRAME_BYTES = 1 << 20
"""Frames above 1 MiB are refused: a five-level book for one symbol is under 1 KiB."""

SUBSCRIBE_FAIL_PREFIX = "Subscribe fail:"
PARAM_NOT_JSON_PREFIX = "Param not json"
_PARAM_NOT_JSON_CODE = 515
_MAX_NOTICE_CHARS = 1024
_ERROR_CODES = range(500, 600)


def classify_frame(frame: str | bytes, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> ServerEvent:
    """Classify one frame as received from the socket.

    Args:
        frame: a text frame as ``str``; a binary frame as ``bytes``.
        max_frame_bytes: frames whose UTF-8 size exceeds this are :class:`Garbage` ("oversized").

    Returns:
        Exactly one event; bad input gives :class:`Garbage`, never an exception.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        return Garbage("binary_frame", _printable(bytes(frame)[:_MAX_NOTICE_CHARS]))
    if _utf8_size_exceeds(frame, max_frame_bytes):
        return Garbage("oversized", frame[:_MAX_NOTICE_CHARS])
    text = frame.strip()
    if text.startswith("{"):
        return _classify_json(text, frame)
    if text.startswith(SUBSCRIBE_FAIL_PREFIX):
        rest = text[len(SUBSCRIBE_FAIL_PREFIX) :].strip()
        if rest.startswith("{"):
            return _classify_json(rest, frame)
        return SubscribeRejected(rest)
    if text.startswith(PARAM_NOT_JSON_PREFIX):
        return _error_event(_PARAM_NOT_JSON_CODE, text, None, frame)
    if _looks_like_prose(text):
        return Notice(text)
    return Garbage("not_json", frame)


def _utf8_size_exceeds(text: str, limit: int) -> bool:
    # A str of n characters is between n and 4n bytes in UTF-8: only encode when it matters.
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _looks_like_prose(text: str) -> bool:
    return 0 < len(text) <= _MAX_NOTICE_CHARS and text.isprintable() and not any(c in text for c in "{}[]")


def _printable(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _classify_json(body: str, raw: str) -> ServerEvent:
    try:
        message: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Garbage("invalid_json", raw)
    if not isinstance(message, dict):
        return Garbage("not_an_object", raw)
    code = message.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return Garbage("missing_code", raw)
    stream = PUSH_STREAM.get(code)
    if stream is not None:
        payload = message.get("data")
        if not isinstance(payload, dict):
            return Garbage("push_without_data", raw)
        return Push(stream, payload, raw)
    trace = _text_or_none(message.get("trace"))
    stream = ACK_STREAM.get(code)
    if stream is not None:
        return SubscribeAck(stream, trace)
    if code == ResponseCode.WELCOME:
        return Welcome(str(message.get("msg", "")))
    if code == ResponseCode.HEARTBEAT_ACK:
        return HeartbeatAck(trace)
    if code == ResponseCode.UNSUBSCRIBE_ACK:
        return UnsubscribeAck(trace)
    if code in _ERROR_CODES:
        trace_id = _text_or_none(message.get("traceId")) or trace
        return _error_event(code, str(message.get("msg", "")), trace_id, raw)
    return UnknownFrame(code, raw)


def _error_event(code: int, message: str, trace: str | None, raw: str) -> VendorError:
    info = vendor_error_info(code)
    return VendorError(code, info.name, info.recovery, message, trace, raw)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
