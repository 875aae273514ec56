"""The REST envelope decoded exactly as INFOWAY-REST.md says, on literal bodies, and never raising for any bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import (
    RestCause,
    RestError,
    RestHistoryLimit,
    RestQuotaExhausted,
    RestRetriable,
    RestTerminal,
)
from bridge.rest.envelope import Success, decode, unwrap_code

KLINE_OK = (
    b'{"ret":200,"msg":"success","traceId":"0b7c2f1e","data":[{"s":"ETHUSDT","respList":['
    b'{"t":"1786779000","o":"1881.20000","h":"1881.95000","l":"1880.90000","c":"1881.50000",'
    b'"v":"112.4031","vw":"211507.6620","pc":"0.02%","pca":"0.30000"}]}]}'
)


def failure(status: int, body: bytes) -> RestError:
    """Decode a body that must be an error."""
    result = decode(status, body)
    assert isinstance(result, RestError), result
    return result


def test_success_gives_data_and_trace() -> None:
    """A ret 200 envelope gives its data and trace id."""
    result = decode(200, KLINE_OK)
    assert isinstance(result, Success)
    assert result.trace == "0b7c2f1e"
    assert result.data[0]["s"] == "ETHUSDT"


def test_ret_500_is_unwrapped_from_msg() -> None:
    """HTTP 200 with ret 500 carries the real code in msg (full-width colon included): 508 unknown codes."""
    error = failure(200, b'{"ret":500,"msg":"All product not exists","traceId":"x","data":null}')
    assert (error.cause, error.code) == (RestCause.UNKNOWN_CODES, 508)
    assert isinstance(error, RestTerminal)
    error = failure(200, '{"ret":500,"msg":"Kline quantity exceeds the limit\uff1a500","data":null}'.encode())
    assert (error.cause, error.code) == (RestCause.BAD_REQUEST, 503)


def test_513_carries_the_earliest_allowed_time() -> None:
    """513 (wrapped as 500) is a history limit with the earliest timestamp read from msg."""
    body = '{"ret":500,"msg":"Timestamp limit error,earliest timestamp\uff1a1786000000","data":null}'.encode()
    error = failure(200, body)
    assert isinstance(error, RestHistoryLimit)
    assert error.earliest == datetime.fromtimestamp(1786000000, UTC)


def test_quota_rate_limit_and_terminal_codes() -> None:
    """502 is the daily quota, 501 a rate limit, 509 and 514 terminal."""
    quota = failure(200, b'{"ret":500,"msg":"Request frequency for the day upper limit"}')
    assert isinstance(quota, RestQuotaExhausted)
    limited = failure(200, '{"ret":500,"msg":"Request frequency exceed the limit\uff1a1200 times per minute"}'.encode())
    assert isinstance(limited, RestRetriable)
    assert limited.cause is RestCause.RATE_LIMITED
    assert failure(200, b'{"ret":509,"msg":"The token permission has expired"}').cause is RestCause.EXPIRED
    denied = failure(200, '{"ret":500,"msg":"No permission\uff1aKorea stock market data"}'.encode())
    assert (denied.cause, denied.code) == (RestCause.NO_PERMISSION, 514)


def test_401_uses_message() -> None:
    """HTTP 401 is unauthorized, its text from message (not msg)."""
    error = failure(401, b'{"code":401,"message":"Token invalid","timestamp":1786779000000}')
    assert error.cause is RestCause.UNAUTHORIZED
    assert error.detail == "Token invalid"


def test_rate_limit_detail_on_200_and_429() -> None:
    """{"detail": "Rate limit exceeded"} is a rate limit on HTTP 200 as on 429, and so is a 429 HTML page."""
    for status in (200, 429):
        assert failure(status, b'{"detail":"Rate limit exceeded"}').cause is RestCause.RATE_LIMITED
    assert failure(429, b"<html>429 Too Many Requests</html>").cause is RestCause.RATE_LIMITED


def test_rfc7807_and_not_found_are_bad_requests() -> None:
    """RFC 7807 problems and {"detail": "Not Found"} are requests the API refused: terminal, not retried."""
    problem = b'{"type":"about:blank","title":"Bad Request","status":400,"detail":"Required parameter","instance":"/x"}'
    error = failure(400, problem)
    assert (error.cause, error.code, error.detail) == (RestCause.BAD_REQUEST, 400, "Required parameter")
    assert failure(404, b'{"detail":"Not Found"}').cause is RestCause.BAD_REQUEST


def test_transport_statuses_are_retriable() -> None:
    """An empty 502, a CDN 524 page and a 200 that is not JSON are transport failures, retriable."""
    for status, body in ((502, b""), (524, b"<html>timeout</html>"), (499, b""), (200, b'{"ret":200,')):
        error = failure(status, body)
        assert error.cause is RestCause.TRANSPORT
        assert error.retriable


def test_unwrap_code_leaves_unknown_messages() -> None:
    """A ret 500 whose msg names no template stays 500; other rets are kept."""
    assert unwrap_code(500, "Internal error") == 500
    assert unwrap_code(513, "anything") == 513


@given(st.integers(100, 599), st.binary(max_size=200))
def test_decode_never_raises(status: int, body: bytes) -> None:
    """Any status and bytes decode to data or an error value, never an exception."""
    assert isinstance(decode(status, body), Success | RestError)


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1, 600),
    st.sampled_from(["", "success", "Rate limit exceeded", "All product not exists", "Timestamp limit error", "500"]),
    st.lists(st.integers(0, 9), max_size=2),
)
keys = st.sampled_from(["ret", "code", "msg", "message", "detail", "title", "status", "data", "traceId"])


@given(st.integers(100, 599), st.dictionaries(keys, json_values, max_size=5))
def test_decode_never_raises_on_envelope_shapes(status: int, body: dict[str, object]) -> None:
    """Envelope-shaped JSON with any values decodes without raising."""
    assert isinstance(decode(status, orjson.dumps(body)), Success | RestError)
