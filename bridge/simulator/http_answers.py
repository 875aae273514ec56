"""What the simulator answers to plain HTTP on its port, built as websockets responses with no I/O.

websockets hands every request to ``process_request`` before the WebSocket upgrade; a response
returned there is sent instead of the upgrade. The simulator uses that to refuse handshakes as
the vendor does (protocol page, "Endpoint and authentication": 404 for another path, 401 with
the vendor's JSON for a wrong or missing key, and the statuses of the refusal fault mode,
proxy statuses that Python's ``HTTPStatus`` does not know included), and to serve
``GET /sim/stats`` (:func:`stats_document`), which no vendor has: what the simulator is doing,
for tests that check from outside which connection holds which code.
"""

from __future__ import annotations

import http
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from bridge.records import Stream
from bridge.simulator.options import SimulatorStats
from bridge.simulator.replies import ClientInfo

WS_PATH: Final = "/ws"
STATS_PATH: Final = "/sim/stats"
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


def stats_document(
    stats: SimulatorStats, connections: Iterable[tuple[ClientInfo, Mapping[Stream, int]]]
) -> dict[str, Any]:
    """The JSON of ``GET /sim/stats``: every open connection (info and pushes sent), then the totals.

    Per connection: ``id``, ``business``, ``opened_at`` (ISO 8601, UTC), ``subscriptions``
    (``trade`` and ``depth`` as code lists, ``kline`` as code to interval numbers, all in
    subscription order), ``pushes_sent`` per stream and ``frames_received``.
    """
    listed = []
    for info, sent in connections:
        klines: dict[str, list[int]] = {}
        for code, interval in info.klines:
            klines.setdefault(code, []).append(int(interval))
        listed.append(
            {
                "id": info.id,
                "business": info.business,
                "opened_at": info.opened_at.isoformat(),
                "subscriptions": {"trade": list(info.trades), "depth": list(info.depth), "kline": klines},
                "pushes_sent": {str(stream): count for stream, count in sent.items()},
                "frames_received": info.frames_received,
            }
        )
    totals = {
        "connections": stats.connections,
        "connections_total": stats.connections_total,
        "handshakes_refused": stats.handshakes_refused,
        "frames_received": stats.frames_received,
        "pushes_sent": {str(stream): count for stream, count in stats.pushes_sent.items()},
        "pushes_skipped": stats.pushes_skipped,
        "garbage_sent": stats.garbage_sent,
        "budget_violations": stats.budget_violations,
        "heartbeat_timeouts": stats.heartbeat_timeouts,
        "connections_aborted": stats.connections_aborted,
        "max_frames_in_window_per_key": stats.max_frames_in_window_per_key,
    }
    return {"connections": listed, "totals": totals}
