"""Our REST envelope decoding agrees with the vendor SDK's (infoway-sdk 0.4.1, ``infoway/_http.py``) on the same bodies.

Both are fed the same HTTP status and bytes; the SDK's ``HttpClient._handle_response`` returns data or
raises, ours returns data or an error value. They must agree on success and its data, on the code
(``ret``, unwrapped from ``msg``, or the HTTP status) and on the kind: key refused, rate limited
(the SDK counts the daily quota, 502, as a rate limit too), or another API error.

One deliberate difference, pinned below: a 2xx body that is not JSON is data ``None`` to the SDK,
a transport failure (retried) to us, since a cut-off page must not pass for "no bars".
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from hypothesis import given
from hypothesis import strategies as st
from infoway._http import HttpClient
from infoway.exceptions import InfowayAPIError, InfowayAuthError, InfowayRateLimitError

from bridge.errors import RestCause, RestError
from bridge.rest.envelope import Success, decode

FULL_WIDTH_COLON = "\uff1a"
# _handle_response uses only static helpers: an instance without its httpx client (no socket) is enough.
SDK = HttpClient.__new__(HttpClient)


def sdk_view(status: int, body: bytes) -> tuple[str, Any]:
    """What the SDK makes of the answer: ("ok", data) or (kind, ret)."""
    response = httpx.Response(status, content=body, request=httpx.Request("GET", "https://data.infoway.io/x"))
    try:
        return "ok", SDK._handle_response(response)
    except InfowayAuthError as exc:
        return "auth", exc.ret
    except InfowayRateLimitError as exc:
        return "rate", exc.ret
    except InfowayAPIError as exc:
        return "api", exc.ret


def our_view(status: int, body: bytes) -> tuple[str, Any]:
    """What we make of it, in the SDK's terms."""
    result = decode(status, body)
    if isinstance(result, Success):
        return "ok", result.data
    assert isinstance(result, RestError)
    if result.cause is RestCause.UNAUTHORIZED:
        return "auth", result.code
    if result.cause in (RestCause.RATE_LIMITED, RestCause.QUOTA_EXHAUSTED):
        return "rate", result.code
    return "api", result.code


CAPTURES = [
    (
        200,
        b'{"ret":200,"msg":"success","traceId":"t","data":[{"s":"AAPL.US","respList":[{"t":"1786737540",'
        b'"o":"305.830","h":"305.900","l":"305.800","c":"305.850","v":"1200","vw":"367020.000","pc":"0.01%","pca":"0.020"}]}]}',
    ),
    (
        200,
        b'{"ret":200,"msg":"success","traceId":"t","data":[{"s":"AAPL.US","t":1786737599000,'
        b'"a":[["305.800"],["100"]],"b":[["305.770"],["200"]]}]}',
    ),
    (200, b'{"ret":200,"msg":"success","traceId":"t","data":[{"s":"BTCUSDT","t":1786737599000,"a":null,"b":null}]}'),
    (401, b'{"code":401,"message":"Token invalid","timestamp":1786779000000}'),
    (200, b'{"detail":"Rate limit exceeded"}'),
    (429, b'{"detail":"Rate limit exceeded"}'),
    (429, b"<html><body>429 Too Many Requests</body></html>"),
    (200, b'{"ret":500,"msg":"All product not exists","traceId":"t","data":null}'),
    (200, f'{{"ret":500,"msg":"Kline quantity exceeds the limit{FULL_WIDTH_COLON}500","data":null}}'.encode()),
    (200, f'{{"ret":500,"msg":"Timestamp limit error,earliest timestamp{FULL_WIDTH_COLON}1786000000"}}'.encode()),
    (200, b'{"ret":500,"msg":"Request frequency for the day upper limit","data":null}'),
    (200, f'{{"ret":500,"msg":"Request frequency exceed the limit{FULL_WIDTH_COLON}1200 times per minute"}}'.encode()),
    (200, f'{{"ret":500,"msg":"No permission{FULL_WIDTH_COLON}Korea stock market data"}}'.encode()),
    (200, b'{"ret":509,"msg":"The token permission has expired"}'),
    (400, b'{"type":"about:blank","title":"Bad Request","status":400,"detail":"Required parameter","instance":"/x"}'),
    (404, b'{"type":"about:blank","title":"Not Found","status":404,"detail":"No static resource","instance":"/x"}'),
    (404, b'{"detail":"Not Found"}'),
    (502, b""),
    (524, b"<html>A timeout occurred</html>"),
    (200, b'{"packageName":"Pro","apiNumPerSec":20}'),
]


def test_the_captured_bodies_decode_alike() -> None:
    """Every body of the reference's capture list (and the SDK's envelope fixtures) decodes the same in both."""
    for status, body in CAPTURES:
        assert our_view(status, body) == sdk_view(status, body), (status, body)


templates = st.sampled_from(
    [
        "success", "All product not exists", "Param error" + FULL_WIDTH_COLON + "klineType", "Param lost",
        "Kline quantity exceeds the limit" + FULL_WIDTH_COLON + "500", "Products quantity exceeds the limit",
        "Request frequency for the day upper limit", "Request frequency exceed the limit", "No permission",
        "The token permission has expired",
        "Timestamp limit error,earliest timestamp" + FULL_WIDTH_COLON + "1786000000",
        "Something else", "",
    ]
)  # fmt: skip


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Envelope-shaped bodies: ret or code, msg or message, data, the rate-limit detail, RFC 7807 problems."""
    shape = draw(st.sampled_from(["ret", "code", "detail", "problem"]))
    if shape == "detail":
        return {"detail": draw(st.sampled_from(["Rate limit exceeded", "Not Found", "rate limit hit"]))}
    if shape == "problem":
        status = draw(st.sampled_from([400, 404, 500]))
        return {"type": "about:blank", "title": "T", "status": status, "detail": draw(templates), "instance": "/x"}
    body: dict[str, Any] = {shape: draw(st.sampled_from([200, 401, 500, 501, 502, 508, 509, 513, 514]))}
    body[draw(st.sampled_from(["msg", "message"]))] = draw(templates)
    if draw(st.booleans()):
        body["data"] = draw(st.none() | st.lists(st.integers(0, 9), max_size=3))
    return body


@given(st.sampled_from([200, 400, 401, 404, 429, 500, 502]), envelopes())
def test_generated_envelopes_decode_alike(status: int, body: dict[str, Any]) -> None:
    """On any envelope-shaped JSON body and status, the two decoders agree on success, data, kind and code."""
    raw = orjson.dumps(body)
    assert our_view(status, raw) == sdk_view(status, raw)


def test_a_2xx_body_that_is_not_json_is_where_we_differ() -> None:
    """A cut-off 200 body is data None to the SDK and a retriable transport failure to us (deliberately)."""
    assert sdk_view(200, b'{"ret":200,"da') == ("ok", None)
    result = decode(200, b'{"ret":200,"da')
    assert isinstance(result, RestError)
    assert result.cause is RestCause.TRANSPORT
    assert result.retriable
