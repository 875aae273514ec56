"""The state a backfill keeps per planned connection and per gap, and the wait for the first live bar.

:mod:`bridge.backfill` drives it; kept apart only to keep each module small.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from bridge.backfill_report import Pair
from bridge.protocol.codes import KlineInterval
from bridge.protocol.events import DataOutcome
from bridge.protocol.requests import ConnectionPlan
from bridge.records import BackfillItem, GapRecord


@dataclass(slots=True)
class Job:
    """One gap's backfill: each pair's bounds, what it published, and whether live bars came."""

    gap: GapRecord
    lower: dict[Pair, int]
    first_after: dict[Pair, int] = field(default_factory=dict)
    live: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a pair's first WebSocket bar after the gap is seen."""
    live_deadline: float | None = None
    """When the job stops waiting for first live bars (loop time): one wait per job, not one per pair."""
    items: list[BackfillItem] = field(default_factory=list)
    first_bar: int | None = None
    last_bar: int | None = None


@dataclass(slots=True)
class Line:
    """One planned connection's backfill state."""

    plan: ConnectionPlan
    intervals: tuple[KlineInterval, ...]
    kline_codes: tuple[str, ...]
    last_bar: dict[Pair, int] = field(default_factory=dict)
    jobs: deque[Job] = field(default_factory=deque)
    held: list[DataOutcome] = field(default_factory=list)
    holding: bool = False
    release_timer: asyncio.TimerHandle | None = None
    worker: asyncio.Task[None] | None = None
    rest_sequence: int = 0


FIRST_LIVE_WAIT_SECONDS = 2.0
"""How long a fill waits for the WebSocket's first bar of its pair after the gap (live klines are held meanwhile)."""


async def first_live_bar(job: Job, pair: Pair) -> None:
    """Wait briefly for the pair's first WebSocket bar after the gap.

    It is the fill's upper bound, and it makes REST's newest bar final. Fetched before it, the
    newest REST bar may be open and is left out; when the WebSocket then starts a bar or more
    later, no one publishes that bar (seen at 60x simulated time). Quiet codes send nothing: the
    job's waiting ends ``FIRST_LIVE_WAIT_SECONDS`` after its first fill began, for all its pairs
    together (a connection of 600 quiet codes must not wait 600 times).
    """
    loop = asyncio.get_running_loop()
    if job.live_deadline is None:
        job.live_deadline = loop.time() + FIRST_LIVE_WAIT_SECONDS
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(job.live_deadline):
            while pair not in job.first_after:
                job.live.clear()
                await job.live.wait()
