"""The ``backfill`` section of the configuration, and the vendor's rule for HK codes.

Part of the one frozen configuration tree (:mod:`bridge.config`); kept apart only to keep each
module small. What the backfill does is in :mod:`bridge.backfill` and the README, "Backfill".
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from bridge.config_base import Frozen
from bridge.config_errors import Invalid

DEFAULT_REST_URL = "https://data.infoway.io"

_HK_CODE = re.compile(r"^(\d+)\.HK$", re.IGNORECASE)


def hk_code_problem(code: str) -> str | None:
    """What is wrong with an HK code that is not five digits (the vendor answers ``700.HK`` "All product not exists").

    Refused rather than padded, because the code is also the Kafka key: the operator writes the
    key consumers will see (``docs/protocol/INFOWAY-REST.md``, discrepancy 6). ``None`` for any other code.
    """
    found = _HK_CODE.match(code)
    if found is None or len(found.group(1)) == 5:
        return None
    digits = found.group(1)
    example = f"{digits.zfill(5)}.HK" if len(digits) < 5 else "00700.HK"
    return f"expected a five-digit HK code such as {example} (the vendor knows 00700.HK, not 700.HK or 0700.HK)"


def _rest_url(value: str) -> str:
    if not re.match(r"^https?://[^/?#]+", value):
        raise Invalid("expected an http:// or https:// URL")
    if "?" in value or "apikey" in value.lower():
        raise Invalid("expected the URL without a query string (the key goes in source.api_key, sent as a header)")
    return value.rstrip("/")


RestUrl = Annotated[str, AfterValidator(_rest_url)]
"""``source.rest_url``: the REST API's base URL."""


class BackfillConfig(Frozen):
    """Kline backfill over REST after every gap, and what it may spend.

    Only klines can be backfilled (REST has no trade or depth history). Requests go one code per
    request, 500 bars per page, through one budget shared by every connection of the process:
    ``share`` of the key's requests per second as ``GET /package/info`` says at start
    (``requests_per_second`` until it answers, or when it cannot).
    """

    enabled: bool = True
    share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The fraction of the key's REST rate this process may use; the rest is left to the user's other programs
    (and, with several replicas, each replica's share is its part)."""
    requests_per_second: Annotated[float, Field(gt=0)] = 1.0
    """The key's rate assumed when ``/package/info`` cannot be read (the Free plan's 1 per second)."""
    max_age_seconds: Annotated[float, Field(gt=0)] = 6 * 3600.0
    """A gap is filled back at most this far from when it closed; older bars are reported as not filled (max_age)."""
    page_bars: Annotated[int, Field(ge=2, le=500)] = 500
    """``klineNum`` per request (the vendor's limit for one code is 500)."""
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    """Bound on each of connect, read, write and waiting for a pooled connection, per request."""
    attempts: Annotated[int, Field(ge=1, le=10)] = 4
    """Tries per request for transport failures and rate limits (never for business errors)."""
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 1.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 30.0
    """Backoff between tries: exponential with full jitter between these."""
    hold_live_seconds: Annotated[float, Field(ge=0)] = 10.0
    """While a connection's backfill runs, its live kline pushes wait (at most this long) so the topic keeps
    bar order per symbol; after that they flow again and late REST bars arrive out of order (the report says so)."""
    hold_max_records: Annotated[int, Field(ge=0)] = 10_000
    """At most this many live kline records wait per connection; one more releases them."""
    max_pending_gaps: Annotated[int, Field(ge=1)] = 16
    """Gaps of one connection waiting for their backfill; a further gap is reported as not filled (stopped)."""
