"""Rates into pushes owed: credit arithmetic and round-robin allocation, with no I/O and no clock.

Theory of operation
-------------------
One :class:`StreamPacer` per stream turns a rate (pushes per second, in total over every
subscribed pair) into whole pushes. Each tick the server passes the seconds elapsed since the
last one: ``rate x elapsed`` is added to a fractional credit, capped at
:data:`MAX_CREDIT_SECONDS` of the rate (so a loop that stalled does not owe a burst), and the whole
part is handed out round-robin to the subscribed pairs, a pair being a target (a connection)
and a :class:`Due` (the code and, for klines, the interval). The cursor survives changes of the
pairs, so the rate stays a total whatever their number and no pair is favoured.

A push handed out is appended to the target's bounded backlog and *reserved* against the
stream's total limit (``max_pushes`` and friends), so the total sent can stop at exactly N; the
server releases a reservation when the push cannot go (its code was unsubscribed or the socket
closed first). A target whose backlog is full is skipped and the push counted as skipped, so
memory stays bounded whatever a client does. With no pairs the credit is dropped: a later
subscriber gets no burst.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

from bridge.protocol.codes import KlineInterval
from bridge.records import Stream

MAX_CREDIT_SECONDS: Final = 0.1
"""Owed pushes accumulate for at most this long while no client can take them (a burst cap)."""


class Due(NamedTuple):
    """A push owed: which stream, which code and, for klines, which interval."""

    stream: Stream
    code: str
    interval: KlineInterval | None = None


class Target(Hashable, Protocol):
    """What the pacer hands pushes to: anything with a backlog of :class:`Due` (a connection)."""

    @property
    def backlog(self) -> deque[Due]:
        """Pushes owed and not yet sent, oldest first."""
        ...


TargetT = TypeVar("TargetT", bound=Target)


@dataclass(slots=True)
class Allocation(Generic[TargetT]):
    """What one :meth:`StreamPacer.allocate` did: who got new pushes, and how many were skipped."""

    woken: set[TargetT] = field(default_factory=set)
    """Targets whose backlog was empty and grew: their senders, waiting, have work."""
    handed: int = 0
    skipped: int = 0
    """Pushes due to a target whose backlog was full (a client that does not read fast enough)."""


class StreamPacer:
    """The pacing state of one stream: rate, fractional credit, total limit and round-robin cursor."""

    def __init__(self, stream: Stream, rate: float, limit: int | None, backlog_limit: int) -> None:
        """Make an idle pacer.

        Args:
            stream: the stream it paces (only carried, for the caller's use).
            rate: pushes per second in total; 0 owes nothing.
            limit: the most pushes it may reserve over its life, or ``None``.
            backlog_limit: the most pushes one target may owe before more are skipped.
        """
        self.stream = stream
        self.rate = rate
        self.limit = limit
        self.backlog_limit = backlog_limit
        self.credit = 0.0
        """Pushes owed but not yet handed out, a fraction below one after each allocation."""
        self.reserved = 0
        """Pushes handed out and not released: owed or sent."""
        self.cursor = 0

    def owed(self, elapsed: float) -> int:
        """Add ``elapsed`` seconds of credit (capped) and take the whole pushes out of it."""
        if self.rate <= 0:
            return 0
        self.credit = min(self.credit + self.rate * elapsed, max(1.0, self.rate * MAX_CREDIT_SECONDS))
        due = int(self.credit)
        self.credit -= due
        return due

    def allocate(self, elapsed: float, pairs: Sequence[tuple[TargetT, Due]]) -> Allocation[TargetT]:
        """Hand ``elapsed`` seconds of pushes round-robin to ``pairs``, appending to their backlogs.

        Stops early once :attr:`limit` pushes are reserved; with no pairs the credit is dropped.
        """
        allocation: Allocation[TargetT] = Allocation()
        if self.rate <= 0:
            return allocation
        if not pairs:
            self.credit = 0.0
            return allocation
        due = self.owed(elapsed)
        limit, backlog_limit, count = self.limit, self.backlog_limit, len(pairs)
        for _ in range(due):
            if limit is not None and self.reserved >= limit:
                break
            target, push = pairs[self.cursor % count]
            self.cursor += 1
            backlog = target.backlog
            if len(backlog) >= backlog_limit:
                allocation.skipped += 1
                continue
            if not backlog:
                # A sender waits only once its backlog is empty: only that one needs waking.
                allocation.woken.add(target)
            backlog.append(push)
            self.reserved += 1
            allocation.handed += 1
        return allocation

    def release(self, count: int = 1) -> None:
        """Give back ``count`` reservations of pushes that could not be sent."""
        self.reserved -= count
