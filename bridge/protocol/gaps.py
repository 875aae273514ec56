"""Gap tracking for one connection: when its data stopped, why, and when it came back.

Theory of operation
-------------------
The vendor does not replay what it pushed while a connection was down (protocol page), so the
bridge reports every interval in which a connection's subscriptions were not being received.
The tracker is a two-state machine, *flowing* or *open gap*, driven with wall-clock instants
passed in:

* :meth:`GapTracker.data_seen` marks that data flows (a push, or every subscription acknowledged
  again) and, when a gap is open, closes it and returns the :class:`~bridge.records.GapRecord`;
* :meth:`GapTracker.stopped` opens a gap: for a stale feed from the last sign of data (the last
  push, or the acknowledgement that closed the previous gap: the data stopped then, not when the
  bridge noticed, and two gaps never overlap), else from the instant the connection ended;
* :meth:`GapTracker.inherit` opens a gap that began before this connection existed: a shard
  handed over from another replica (or from this replica's previous run), whose data stopped
  when the previous owner last read it;
* :meth:`GapTracker.finish` closes a gap still open when the bridge stops, as unresolved.

A connection that never had data has no gap to report: its first subscribe has not happened
yet, or the vendor refused it, which the log says on its own. A second stop while a gap is open
keeps the first gap's start and cause: the hole began then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.records import Cause, GapRecord, Stream


@dataclass(frozen=True, slots=True)
class _OpenGap:
    start: datetime
    cause: Cause
    code: int | None
    previous_connection_id: str


class GapTracker:
    """The gap state of one planned connection (see the module docstring).

    Args:
        business: the vendor business of the connection.
        connection: the connection's stable plan name (``crypto-0``), the gap record's key.
        codes: the codes it carries, all affected by a gap.
        streams: the streams it carries.
    """

    def __init__(self, business: str, connection: str, codes: tuple[str, ...], streams: tuple[Stream, ...]) -> None:
        self.business = business
        self.connection = connection
        self.codes = codes
        self.streams = streams
        self._ever_flowed = False
        self._last_data: datetime | None = None
        self._open: _OpenGap | None = None

    @property
    def open(self) -> bool:
        """Whether a gap is open now."""
        return self._open is not None

    def push_seen(self, wall: datetime, connection_id: str) -> GapRecord | None:
        """A push arrived at ``wall``: data flows; returns the gap it closes, if one was open."""
        return self.data_seen(wall, connection_id)

    def data_seen(self, wall: datetime, connection_id: str) -> GapRecord | None:
        """Data flows again at ``wall`` on ``connection_id``; returns the gap this closes, if one was open."""
        self._ever_flowed = True
        self._last_data = wall
        return self._close(wall, connection_id) if self._open is not None else None

    def stopped(self, cause: Cause, code: int | None, wall: datetime, connection_id: str) -> None:
        """The connection's data stopped at ``wall`` (or, for a stale feed, at its last push)."""
        if self._open is not None or not self._ever_flowed:
            return
        start = self._last_data if cause is Cause.STALE and self._last_data is not None else wall
        self._open = _OpenGap(start, cause, code, connection_id)

    def inherit(self, start: datetime, cause: Cause, previous_connection_id: str) -> None:
        """The data of these codes stopped at ``start``, before this connection: the gap is open until it flows."""
        if self._open is None:
            self._open = _OpenGap(start, cause, None, previous_connection_id)

    def finish(self, wall: datetime) -> GapRecord | None:
        """The bridge stops (or the connection failed for good): the open gap, unresolved, if any."""
        return self._close(wall, None) if self._open is not None else None

    def _close(self, end: datetime, next_connection_id: str | None) -> GapRecord:
        gap = self._open
        assert gap is not None
        self._open = None
        return GapRecord(
            business=self.business,
            connection=self.connection,
            codes=self.codes,
            streams=self.streams,
            start=gap.start,
            end=max(end, gap.start),
            cause=gap.cause,
            code=gap.code,
            resolved=next_connection_id is not None,
            previous_connection_id=gap.previous_connection_id,
            next_connection_id=next_connection_id,
        )
