"""The vendor's REST answers decoded into data or a typed error, with no I/O.

Theory of operation
-------------------
One function, :func:`decode`, takes the HTTP status and the body bytes and returns either
:class:`Success` (the envelope's ``data``) or a :class:`~bridge.errors.RestError` *value*; it never
raises for bad input (STYLE habit 2), so the I/O shell decides what to raise and when to retry.
The order of the checks is the reference's (``docs/protocol/INFOWAY-REST.md``, "Errors: envelope and codes"),
which is also the vendor SDK's (``infoway/_http.py``, 0.4.1), and a differential test compares the two:

1. a body that is not JSON: 401 is the key, 429 an HTML rate-limit page, anything else transport
   (502 with an empty body, the CDN's 499 and 524, a cut-off body);
2. HTTP 401 (``{"code":401,"message":"Token invalid"}``: ``message``, not ``msg``);
3. HTTP 429;
4. ``{"detail": ...}`` with no ``ret``/``code``/``data``: ``Rate limit exceeded`` (on 200 too) or a gateway refusal;
5. an RFC 7807 problem (``title`` and ``status``): a request the API refused;
6. ``ret`` (or ``code``) other than 200, the real code read back from ``msg`` when ``ret`` is 500
   (production wraps most business errors as HTTP 200, ``ret`` 500, the code's template in ``msg``);
7. any other HTTP error status;
8. otherwise ``data`` (or the whole body when it has none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from bridge.errors import (
    RestCause,
    RestError,
    RestHistoryLimit,
    RestQuotaExhausted,
    RestRetriable,
    RestTerminal,
)

RET_OK: Final = 200
RET_WRAPPED: Final = 500
MAX_DETAIL_CHARS: Final = 300

# The msg templates of the REST codes (reference, "ret codes for REST"); matched case-blind at the start.
_TEMPLATES: Final = (
    (501, "request frequency exceed the limit"),
    (502, "request frequency for the day upper limit"),
    (503, "kline quantity exceeds the limit"),
    (504, "orderbook depth exceeds the limit"),
    (505, "products quantity exceeds the limit"),
    (506, "param error"),
    (507, "param lost"),
    (508, "all product not exists"),
    (509, "the token permission has expired"),
    (510, "websocket connections exceeds the limit"),
    (511, "websocket heartbeat timeout"),
    (512, "websocket disconnected"),
    (513, "timestamp limit error"),
    (514, "no permission"),
)
_CAUSE_OF_CODE: Final = {
    401: RestCause.UNAUTHORIZED,
    429: RestCause.RATE_LIMITED,
    501: RestCause.RATE_LIMITED,
    502: RestCause.QUOTA_EXHAUSTED,
    503: RestCause.BAD_REQUEST,
    504: RestCause.BAD_REQUEST,
    505: RestCause.BAD_REQUEST,
    506: RestCause.BAD_REQUEST,
    507: RestCause.BAD_REQUEST,
    508: RestCause.UNKNOWN_CODES,
    509: RestCause.EXPIRED,
    513: RestCause.HISTORY_LIMIT,
    514: RestCause.NO_PERMISSION,
}
# "Timestamp limit error,earliest timestamp" then a full-width (U+FF1A) or ASCII colon and Unix seconds.
_EARLIEST = re.compile(r"earliest timestamp\s*[:\uff1a]\s*(\d{9,11})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Success:
    """A request answered with data: the envelope's ``data`` (``None`` when it was null) and its trace id."""

    data: Any
    trace: str | None = None


Decoded = Success | RestError


def unwrap_code(ret: int, msg: str) -> int:
    """The business code behind ``ret``: a ``ret`` of 500 whose ``msg`` starts with a known template is that code."""
    if ret != RET_WRAPPED:
        return ret
    text = msg.strip().lower()
    for code, template in _TEMPLATES:
        if text.startswith(template):
            return code
    return ret


def error_of(cause: RestCause, detail: str, code: int | None) -> RestError:
    """The typed error of a cause: retriable, quota, history limit or terminal."""
    detail = detail[:MAX_DETAIL_CHARS]
    if cause in (RestCause.RATE_LIMITED, RestCause.TRANSPORT):
        return RestRetriable(cause, detail, code)
    if cause is RestCause.QUOTA_EXHAUSTED:
        return RestQuotaExhausted(cause, detail, code)
    if cause is RestCause.HISTORY_LIMIT:
        found = _EARLIEST.search(detail)
        earliest = None if found is None else datetime.fromtimestamp(int(found.group(1)), UTC)
        return RestHistoryLimit(detail, earliest, code)
    return RestTerminal(cause, detail, code)


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _status_error(status: int, detail: str) -> RestError:
    """An HTTP error status with nothing more specific in the body."""
    if status == 401:
        return error_of(RestCause.UNAUTHORIZED, detail or "Unauthorized", status)
    if status == 429:
        return error_of(RestCause.RATE_LIMITED, detail or "Too Many Requests", status)
    if status >= 500 or status in (408, 499):
        return error_of(RestCause.TRANSPORT, detail or f"HTTP {status}", status)
    return error_of(RestCause.BAD_REQUEST, detail or f"HTTP {status}", status)


def decode(status: int, body: bytes) -> Decoded:
    """The data of one REST answer, or why there is none (see the module docstring for the order).

    Args:
        status: the HTTP status.
        body: the body as received.

    Returns:
        :class:`Success`, or a :class:`~bridge.errors.RestError` value (never raised here).
    """
    try:
        parsed: Any = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        parsed = None
        if status < 400:
            return error_of(RestCause.TRANSPORT, f"HTTP {status} with a body that is not JSON", status)
    if parsed is None:
        if status < 400:
            return Success(None)
        return _status_error(status, "")
    answer: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    msg = _text(answer.get("msg") or answer.get("message"))
    trace = answer.get("traceId") or answer.get("trace")
    if status == 401:
        return error_of(RestCause.UNAUTHORIZED, msg or "Unauthorized", 401)
    if status == 429:
        return error_of(RestCause.RATE_LIMITED, _text(answer.get("detail")) or msg or "Rate limit exceeded", 429)
    if "detail" in answer and not {"ret", "code", "data"} & answer.keys():
        detail = _text(answer["detail"])
        problem = answer.get("status")
        code = problem if isinstance(problem, int) else status
        if "rate limit" in detail.lower():
            return error_of(RestCause.RATE_LIMITED, detail, code)
        return _status_error(code, detail)
    if "title" in answer and "status" in answer:
        problem = answer["status"]
        code = problem if isinstance(problem, int) else status
        return _status_error(code, _text(answer.get("detail") or answer.get("title")))
    ret = answer["ret"] if "ret" in answer else answer.get("code")
    if ret is not None and ret != RET_OK:
        number = ret if isinstance(ret, int) else int(ret) if str(ret).isdigit() else RET_WRAPPED
        code = unwrap_code(number, msg)
        return error_of(_CAUSE_OF_CODE.get(code, RestCause.SERVER_ERROR), msg or f"ret {number}", code)
    if status >= 400:
        return _status_error(status, msg)
    if isinstance(parsed, dict):
        return Success(parsed.get("data", parsed), trace if isinstance(trace, str) else None)
    return Success(parsed)
