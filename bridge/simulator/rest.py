"""The vendor's REST API as the simulator answers it, with no I/O: request in, status and body out.

Theory of operation
-------------------
:class:`RestApi` answers the endpoints the bridge uses (``docs/protocol/INFOWAY-REST.md``) from the same
:class:`~bridge.simulator.market.Market` objects the WebSocket pushes come from, so a REST bar is
the bar the pushes showed, in its latest state: newest first, sparse (quiet intervals have none),
the newest possibly still open. It keeps the vendor's quirks:

* business errors are HTTP 200 with ``ret`` 500 and the code's English template in ``msg``
  (with the full-width colon), as production sends them;
* a wrong or missing ``apiKey`` header is HTTP 401 ``{"code":401,"message":"Token invalid",...}``;
* more than ``rate`` requests per second per key get ``{"detail":"Rate limit exceeded"}``, on HTTP
  429 and 200 in turn (both occur);
* at most 100 codes (505) and, for one code, 500 bars (503); with several codes every code gets
  only its 2 latest bars, silently; an unpadded HK code (``700.HK``) is "All product not exists";
* a ``timestamp`` in milliseconds is a param error; one older than ``history_seconds`` is 513 with
  the earliest allowed time.

Fault modes (:data:`FAULTS`, set at start or by ``GET /sim/rest-fault?mode=...``): ``rate-limit``
(every request), ``quota`` (502, the daily quota), ``unauthorized`` (401), ``ret500`` (a 500 whose
``msg`` names no code), ``none``. Time is an argument: market seconds and a monotonic instant.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from bridge.protocol.codes import KlineInterval
from bridge.simulator.market import BUSINESSES, Market

FULL_WIDTH_COLON: Final = "\uff1a"
FAULTS: Final = ("none", "rate-limit", "quota", "unauthorized", "ret500")
MAX_CODES: Final = 100
MAX_BARS: Final = 500
MULTI_CODE_BARS: Final = 2
_UNPADDED_HK = re.compile(r"^\d{1,4}\.HK$")


@dataclass(slots=True)
class RestStats:
    """What the REST side answered, by endpoint and outcome (``ok``, ``rate_limited``, or the ``ret`` code)."""

    answers: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, endpoint: str, outcome: str) -> None:
        """Count one answer."""
        per = self.answers.setdefault(endpoint, {})
        per[outcome] = per.get(outcome, 0) + 1

    def total(self, endpoint: str, outcome: str | None = None) -> int:
        """Answers of ``endpoint`` (with ``outcome``, or all)."""
        per = self.answers.get(endpoint, {})
        return per.get(outcome, 0) if outcome is not None else sum(per.values())


Answer = tuple[int, bytes]


def _json(status: int, document: Any) -> Answer:
    return status, orjson.dumps(document)


def _envelope(data: Any) -> Answer:
    return _json(200, {"ret": 200, "msg": "success", "traceId": str(uuid.uuid4()), "data": data})


def business_error(template: str, detail: str = "") -> Answer:
    """A business error as production sends it: HTTP 200, ``ret`` 500, the code's template (and detail) in ``msg``."""
    msg = f"{template}{FULL_WIDTH_COLON}{detail}" if detail else template
    return _json(200, {"ret": 500, "msg": msg, "traceId": str(uuid.uuid4()), "data": None})


class RestApi:
    """The REST endpoints over the simulator's markets (see the module docstring).

    Args:
        api_key: the only key accepted.
        market: the market of a business (shared with the WebSocket side).
        rate: requests per second per key.
        history_seconds: how far back ``timestamp`` may reach, in market seconds; ``None``: no limit.
        fault: the fault mode at start.
    """

    def __init__(
        self,
        api_key: str,
        market: Callable[[str], Market],
        *,
        rate: float = 10.0,
        history_seconds: float | None = None,
        fault: str = "none",
    ) -> None:
        self._key = api_key
        self._market = market
        self.rate = rate
        self.history_seconds = history_seconds
        self.fault = "none"
        self.set_fault(fault)
        self.stats = RestStats()
        self._recent: dict[str, deque[float]] = {}
        self._limited_answers = 0

    def set_fault(self, mode: str) -> None:
        """Switch the fault mode.

        Raises:
            ValueError: an unknown mode.
        """
        if mode not in FAULTS:
            raise ValueError(f"unknown REST fault mode {mode!r}: use one of {', '.join(FAULTS)}")
        self.fault = mode

    def answer(self, method: str, path: str, key: str | None, body: bytes, market_s: int, now: float) -> Answer:
        """The status and body for one request.

        Args:
            method: ``GET`` or ``POST``.
            path: the request path without its query.
            key: the ``apiKey`` header (any case of the name), or ``None``.
            body: the request body.
            market_s: the market clock in Unix seconds.
            now: a monotonic instant, for the rate limit.
        """
        endpoint = _endpoint(path)
        status, payload = self._answer(endpoint, method, path, key, body, market_s, now)
        self.stats.count(endpoint, _outcome(status, payload))
        return status, payload

    def _answer(
        self, endpoint: str, method: str, path: str, key: str | None, body: bytes, market_s: int, now: float
    ) -> Answer:
        if key != self._key or self.fault == "unauthorized":
            return _json(401, {"code": 401, "message": "Token invalid", "timestamp": market_s * 1000})
        if self.fault == "rate-limit" or self._over_rate(key, now):
            self._limited_answers += 1
            return (429 if self._limited_answers % 2 else 200), b'{"detail":"Rate limit exceeded"}'
        if self.fault == "quota":
            return business_error("Request frequency for the day upper limit")
        if self.fault == "ret500":
            return business_error("Internal server error")
        parts = path.strip("/").split("/")
        if endpoint == "package_info":
            return _envelope(self._package())
        if endpoint == "other" or parts[0] not in BUSINESSES:
            return _json(404, {"detail": "Not Found"})
        if endpoint == "kline":
            if method != "POST":
                return _json(405, {"detail": "Method Not Allowed"})
            return self._klines(parts[0], body, market_s)
        return self._depth(parts[0], parts[2] if len(parts) > 2 else "", market_s)

    def _over_rate(self, key: str, now: float) -> bool:
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.rate:
            return True
        recent.append(now)
        return False

    def _package(self) -> dict[str, Any]:
        return {
            "packageName": "Simulator",
            "expireTime": "2099-12-31 23:59:59",
            "apiNumPerSec": self.rate,
            "maxWsConNum": 10,
            "maxNum": 600,
            "maxYearHisData": 1,
            "allWsNum": 0,
        }

    def _klines(self, business: str, body: bytes, market_s: int) -> Answer:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return business_error("Param error", "body")
        if not isinstance(request, dict) or not request.get("codes") or "klineType" not in request:
            return business_error("Param lost")
        codes = list(dict.fromkeys(code.strip() for code in str(request["codes"]).split(",") if code.strip()))
        if len(codes) > MAX_CODES:
            return business_error("Products quantity exceeds the limit", str(MAX_CODES))
        try:
            interval = KlineInterval(int(request["klineType"]))
        except (TypeError, ValueError):
            return business_error("Param error", "klineType")
        wanted = request.get("klineNum", 1)
        if not isinstance(wanted, int) or wanted < 1:
            return business_error("Param error", "klineNum")
        if len(codes) == 1 and wanted > MAX_BARS:
            return business_error("Kline quantity exceeds the limit", str(MAX_BARS))
        timestamp = request.get("timestamp")
        if timestamp is not None:
            if not isinstance(timestamp, int) or timestamp > 10**11:
                return business_error("Param error", "timestamp")
            if self.history_seconds is not None and timestamp < market_s - self.history_seconds:
                earliest = int(market_s - self.history_seconds)
                return business_error("Timestamp limit error,earliest timestamp", str(earliest))
        known = [code for code in codes if not (business == "stock" and _UNPADDED_HK.match(code))]
        if not known:
            return business_error("All product not exists")
        count = wanted if len(codes) == 1 else min(wanted, MULTI_CODE_BARS)
        market = self._market(business)
        data = [
            {"s": code, "respList": market.instrument(code).bars(interval, timestamp, count)}
            for code in known
        ]  # fmt: skip
        return _envelope(data)

    def _depth(self, business: str, listed: str, market_s: int) -> Answer:
        codes = list(dict.fromkeys(code for code in listed.split(",") if code))
        if not codes:
            return business_error("Param lost")
        if len(codes) > MAX_CODES:
            return business_error("Products quantity exceeds the limit", str(MAX_CODES))
        market = self._market(business)
        return _envelope([market.instrument(code).depth(market_s * 1000) for code in codes])


def _endpoint(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts == ["package", "info"]:
        return "package_info"
    if len(parts) == 3 and parts[1:] == ["v2", "batch_kline"]:
        return "kline"
    if len(parts) == 3 and parts[1] == "batch_depth":
        return "depth"
    return "other"


def _outcome(status: int, body: bytes) -> str:
    if body == b'{"detail":"Rate limit exceeded"}':
        return "rate_limited"
    if status != 200:
        return str(status)
    answer = orjson.loads(body)
    return "ok" if answer.get("ret") == 200 else str(answer.get("msg", "")).split(FULL_WIDTH_COLON)[0]
