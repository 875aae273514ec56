"""The gap tracker on its own: wall-clock instants in, gap records out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.protocol.gaps import GapTracker
from bridge.records import Cause, Stream

T0 = datetime(2026, 8, 15, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """The instant ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def tracker() -> GapTracker:
    """A tracker for one crypto connection of two codes."""
    return GapTracker("crypto", "crypto-0", ("BTCUSDT", "ETHUSDT"), (Stream.TRADE, Stream.DEPTH))


def test_no_gap_before_any_data() -> None:
    """A connection that never had data reports no gap when it stops (nothing was missed that was flowing)."""
    subject = tracker()
    subject.stopped(Cause.SOCKET_ERROR, None, at(1), "c#1")
    assert not subject.open
    assert subject.finish(at(2)) is None


def test_a_gap_runs_from_the_loss_to_the_next_data() -> None:
    """Data, a loss at 5 s, data again at 9 s: one resolved gap from 5 to 9 naming both connection ids."""
    subject = tracker()
    assert subject.push_seen(at(1), "c#1") is None
    subject.stopped(Cause.CLOSED, None, at(5), "c#1")
    gap = subject.push_seen(at(9), "c#2")
    assert gap is not None
    assert (gap.start, gap.end, gap.seconds, gap.cause, gap.resolved) == (at(5), at(9), 4.0, Cause.CLOSED, True)
    assert (gap.previous_connection_id, gap.next_connection_id) == ("c#1", "c#2")
    assert gap.codes == ("BTCUSDT", "ETHUSDT")
    assert subject.push_seen(at(10), "c#2") is None, "closed once"


def test_a_stale_gap_starts_at_the_last_push() -> None:
    """For a stale feed the data stopped at the last push, not when the silence was noticed."""
    subject = tracker()
    subject.push_seen(at(3), "c#1")
    subject.stopped(Cause.STALE, None, at(63), "c#1")
    gap = subject.data_seen(at(64), "c#2")
    assert gap is not None
    assert (gap.start, gap.end) == (at(3), at(64))


def test_a_second_stop_keeps_the_first_start_and_cause() -> None:
    """Failed reconnects during a gap do not move its start: the hole began at the first loss."""
    subject = tracker()
    subject.data_seen(at(0), "c#1")
    subject.stopped(Cause.VENDOR_ERROR, 513, at(2), "c#1")
    subject.stopped(Cause.HTTP_REFUSED, 503, at(4), "c#2")
    gap = subject.data_seen(at(6), "c#3")
    assert gap is not None
    assert (gap.start, gap.cause, gap.code, gap.previous_connection_id) == (at(2), Cause.VENDOR_ERROR, 513, "c#1")


def test_finish_reports_an_open_gap_unresolved() -> None:
    """A gap still open when the bridge stops is closed at the stop, unresolved, with no next connection."""
    subject = tracker()
    subject.data_seen(at(0), "c#1")
    subject.stopped(Cause.SOCKET_ERROR, None, at(2), "c#1")
    gap = subject.finish(at(7))
    assert gap is not None
    assert (gap.end, gap.resolved, gap.next_connection_id) == (at(7), False, None)
    assert subject.finish(at(8)) is None


def test_stale_gaps_after_an_acknowledgement_do_not_overlap() -> None:
    """A feed that stays silent across reconnects gives gaps end to end, never two covering the same time."""
    subject = tracker()
    subject.push_seen(at(1), "c#1")
    subject.stopped(Cause.STALE, None, at(11), "c#1")
    first = subject.data_seen(at(12), "c#2")
    subject.stopped(Cause.STALE, None, at(22), "c#2")
    second = subject.data_seen(at(23), "c#3")
    assert first is not None
    assert second is not None
    assert (first.start, first.end, second.start, second.end) == (at(1), at(12), at(12), at(23))


def test_an_inherited_gap_runs_from_the_previous_owner_to_the_first_data() -> None:
    """A shard taken over: the gap opens before this connection ever had data and closes at its first push."""
    subject = tracker()
    subject.inherit(at(2), Cause.SHARD_MOVED, "crypto.s03-0#4@old-run")
    gap = subject.push_seen(at(9), "crypto.s03-0#1@new-run")
    assert gap is not None
    assert (gap.start, gap.end, gap.cause, gap.resolved) == (at(2), at(9), Cause.SHARD_MOVED, True)
    assert gap.previous_connection_id == "crypto.s03-0#4@old-run"
