"""The vendor's REST API over HTTP: a thin shell around :mod:`bridge.rest.envelope` and the shared budget.

Why httpx: it is actively maintained (encode/httpx), async-native on asyncio, has separate connect,
read, write and pool timeouts (every request here is bounded), a bounded connection pool, and it is
what the vendor's own SDK uses, so both clients see the same bytes in the differential test. It
sends the key only where we put it: the ``apiKey`` header, never the URL, so the key never lands
in an access log or in our logs (which name the method and path only).

Retries: transport failures and rate limits only (:class:`~bridge.errors.RestRetriable`), with
full-jitter backoff from the injected :class:`~bridge.timing.RetryPolicy`; a rate limit also pauses
the shared :class:`~bridge.rest.budget.RequestBudget`, so every connection backs off together.
Business errors are never retried: they come back as the typed error :func:`envelope.decode` made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from bridge.errors import RestCause, RestRetriable
from bridge.rest import envelope
from bridge.rest.budget import RequestBudget
from bridge.timing import Clock, RetryPolicy

log = logging.getLogger(__name__)

Observer = Callable[[str, str], None]
"""Told ``(endpoint, outcome)`` after every attempt: ``ok`` or a :class:`RestCause` value."""


class RestClient:
    """Requests to ``base_url`` for one key, every one through the shared budget.

    Args:
        base_url: ``source.rest_url`` (``https://data.infoway.io``).
        api_key: sent in the ``apiKey`` header only.
        budget: shared by every caller in the process.
        retry: backoff between attempts of one request.
        attempts: tries per request for retriable failures (1 = no retry).
        timeout: seconds for each of connect, read, write and waiting for a pooled connection.
        clock: the time source of the budget.
        observe: counts attempts by endpoint and outcome (the metrics).
        transport: for tests only, an httpx transport to use instead of the network.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        budget: RequestBudget,
        *,
        retry: RetryPolicy | None = None,
        attempts: int = 3,
        timeout: float = 10.0,
        clock: Clock | None = None,
        observe: Observer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.budget = budget
        self._retry = retry or RetryPolicy(initial=1.0, maximum=30.0)
        self._attempts = max(1, attempts)
        self._clock = clock or Clock()
        self._observe = observe or (lambda endpoint, outcome: None)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"apiKey": api_key, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        await self._http.aclose()

    async def klines(self, business: str, body: dict[str, Any]) -> Any:
        """``POST /{business}/v2/batch_kline`` with ``body`` (:func:`bridge.rest.paging.kline_body`); returns ``data``.

        Raises:
            RestError: the typed reason, after the retries for retriable ones.
        """
        return await self.request("kline", "POST", f"/{business}/v2/batch_kline", body)

    async def depth(self, business: str, codes: tuple[str, ...]) -> Any:
        """``GET /{business}/batch_depth/{codes}`` (at most 100 codes); returns ``data``.

        Raises:
            RestError: the typed reason, after the retries for retriable ones.
        """
        return await self.request("depth", "GET", f"/{business}/batch_depth/{','.join(codes)}")

    async def package_info(self) -> Any:
        """``GET /package/info``: the key's plan (``apiNumPerSec`` and more); returns ``data``.

        Raises:
            RestError: the typed reason, after the retries for retriable ones.
        """
        return await self.request("package_info", "GET", "/package/info")

    async def request(self, endpoint: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request through the budget, retried on transport failures and rate limits; safe to cancel.

        Raises:
            RestError: why there is no data.
        """
        content = None if body is None else orjson.dumps(body)
        headers = None if body is None else {"Content-Type": "application/json"}
        attempt = 0
        while True:
            await self._take_budget()
            result = await self._once(method, path, content, headers)
            outcome = "ok" if isinstance(result, envelope.Success) else result.cause.value
            self._observe(endpoint, outcome)
            if isinstance(result, envelope.Success):
                return result.data
            attempt += 1
            if not isinstance(result, RestRetriable) or attempt >= self._attempts:
                log.debug("%s %s failed for good: %s", method, path, result)
                raise result
            delay = self._retry.delay(attempt - 1)
            if result.cause is RestCause.RATE_LIMITED:
                self.budget.pause(self._clock.monotonic(), delay)
            log.debug("%s %s: %s; retrying in %.2fs (attempt %d)", method, path, result, delay, attempt)
            await asyncio.sleep(delay)

    async def _take_budget(self) -> None:
        # A shared bucket refills with time, not with an event anyone could set: sleeping is the wait.
        while (wait := self.budget.take(self._clock.monotonic())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    async def _once(
        self, method: str, path: str, content: bytes | None, headers: dict[str, str] | None
    ) -> envelope.Decoded:
        try:
            response = await self._http.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException:
            return envelope.error_of(RestCause.TRANSPORT, f"{method} {path}: timed out", None)
        except httpx.HTTPError as exc:
            # httpx's messages name the URL (never the key, which is only in a header) and the errno.
            return envelope.error_of(RestCause.TRANSPORT, f"{method} {path}: {type(exc).__name__}: {exc}", None)
        return envelope.decode(response.status_code, response.content)
