"""Time and retry policy, injected (STYLE habits 1 and 4), so tests run reconnects and backoffs in milliseconds."""

from __future__ import annotations

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
