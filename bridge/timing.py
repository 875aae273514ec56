"""Time and retry policy, injected (STYLE habits 1 and 4), so tests run reconnects and backoffs in milliseconds."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Reconnect delays: exponential from ``initial`` to ``maximum`` with full jitter.

    Full jitter (a uniform draw between 0 and the exponential bound) spreads the reconnects of
    many bridges after a vendor outage instead of synchronising them.
    ``healthy_after``: a connection that lived this long resets the exponent.
    """

    initial: float = 1.0
    maximum: float = 30.0
    healthy_after: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """The wait before reconnect attempt ``attempt`` (0-based)."""
        bound = min(self.maximum, self.initial * 2.0 ** min(attempt, 30))
        return self.rng.uniform(0, bound)


class Clock:
    """Time, injected: ``monotonic`` for intervals, ``wall`` for record timestamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        return time.monotonic()

    def wall(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; returns whether it is set. Safe to cancel.

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 ``wait_for`` can swallow a
    cancellation that arrives as the event is set, and a loop around it then never ends.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


def remaining_linger(max_wait_ms: int, oldest_received: datetime, now: datetime) -> float:
    """Seconds a round still waits for more records: ``max_wait_ms`` counted from the oldest one's receipt.

    As Kafka's ``linger.ms`` counts from a batch's first record: records that arrived while the last
    round was in flight have waited already, and sleeping the full wait on top of that only added
    latency (measured: the p99 receipt-to-ack of exactly-once delivery at 5,000 records/s). A wall
    clock stepped back never makes the wait longer than ``max_wait_ms``.
    """
    limit = max_wait_ms / 1000
    return min(limit, limit - (now - oldest_received).total_seconds())
