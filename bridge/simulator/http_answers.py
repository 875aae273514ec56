"""What the simulator answers to plain HTTP on its port, built as websockets responses with no I/O.

websockets hands every request to ``process_request`` before the WebSocket upgrade; a response
returned there is sent instead of the upgrade. The simulator uses that to refuse handshakes as
the vendor does (protocol page, "Endpoint and authentication": 404 for another path, 401 with
the vendor's JSON for a wrong or missing key, and the statuses of the refusal fault mode,
proxy statuses that Python's ``HTTPStatus`` does not know included).
"""

from __future__ import annotations

import http
from typing import Final
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

WS_PATH: Final = "/ws"
INVALID_KEY_BODY: Final = '{"message":"Invalid API key in request"}'
"""The body of the 401 that refuses a key (protocol page, "Endpoint and authentication")."""
TOO_MANY_REQUESTS_BODY: Final = '{"message":"Too many requests"}'
"""The body of a 429 (plan quota) refusal."""
_REFUSAL_BODIES: Final = {401: INVALID_KEY_BODY, 429: TOO_MANY_REQUESTS_BODY}
# Proxy statuses the protocol page names that Python's HTTPStatus does not know.
_PROXY_PHRASES: Final = {
    499: "Client Closed Request",
    520: "Web Server Returned an Unknown Error",
    521: "Web Server Is Down",
    522: "Connection Timed Out",
    523: "Origin Is Unreachable",
    524: "A Timeout Occurred",
}


def phrase(status: int) -> str:
    """The reason phrase of an HTTP status, proxy statuses included."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return _PROXY_PHRASES.get(status, "Error")


def refusal_body(status: int) -> str:
    """The body the vendor's gateway sends with a refused handshake of ``status``."""
    return _REFUSAL_BODIES.get(status, phrase(status))


def response(status: int, body: str | bytes, content_type: str | None = None) -> Response:
    """A complete response; the content type is JSON for a body that starts with ``{``, else plain text."""
    data = body.encode() if isinstance(body, str) else body
    if content_type is None:
        content_type = "application/json" if data.startswith(b"{") else "text/plain; charset=utf-8"
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(status, phrase(status), headers, data)


def query_value(target: str, name: str) -> str | None:
    """The first value of query parameter ``name`` in a request target, or ``None``."""
    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None


def path_of(target: str) -> str:
    """The path of a request target, without its query."""
    return urlsplit(target).path
