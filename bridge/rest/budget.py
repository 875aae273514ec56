"""The REST request budget every connection of the process shares, with no I/O: a token bucket, time passed in.

The vendor counts one budget per key for all REST endpoints together (``docs/protocol/INFOWAY-REST.md``, "Rate
limits"), which the user's other programs share. The bridge may use ``share`` of the key's
requests per second (``GET /package/info``'s ``apiNumPerSec``, or ``backfill.requests_per_second``
when that cannot be read); with sharding each replica gets its own fraction. A rate-limit answer
pauses the whole bucket (:meth:`RequestBudget.pause`), so every connection backs off together.
"""

from __future__ import annotations


class RequestBudget:
    """Requests per second for this process, as a token bucket of one second's worth.

    Args:
        key_rate: the key's requests per second.
        share: the fraction of it this process may use, in (0, 1].
        now: the monotonic time the bucket starts at (full).
    """

    def __init__(self, key_rate: float, share: float, now: float) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self.share = share
        self.rate = self._rate_of(key_rate)
        self._tokens = self.capacity
        self._updated = now
        self._paused_until = now

    def _rate_of(self, key_rate: float) -> float:
        if not key_rate > 0:
            raise ValueError(f"the key's rate must be > 0, not {key_rate}")
        return key_rate * self.share

    @property
    def capacity(self) -> float:
        """The largest burst: one second of requests, at least one request."""
        return max(1.0, self.rate)

    def resize(self, key_rate: float, now: float) -> None:
        """The key's real rate became known (``/package/info``): refill at the new rate from now on."""
        self._refill(now)
        self.rate = self._rate_of(key_rate)
        self._tokens = min(self._tokens, self.capacity)

    def available(self, now: float) -> float:
        """Requests that could start now without waiting (0 while paused)."""
        self._refill(now)
        return 0.0 if now < self._paused_until else self._tokens

    def take(self, now: float) -> float:
        """Take one request if one is available: returns 0, else the seconds to wait before asking again."""
        self._refill(now)
        if now < self._paused_until:
            return self._paused_until - now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    def pause(self, now: float, seconds: float) -> None:
        """Nobody requests anything for ``seconds`` (the vendor said "rate limit"); the bucket empties."""
        self._refill(now)
        self._tokens = 0.0
        self._paused_until = max(self._paused_until, now + seconds)

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._updated, 0.0)
        self._updated = max(now, self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
