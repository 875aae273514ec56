"""Hand-off decisions and control records, as pure values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.handoff import ControlRecord, Inherited, ShardState, Verdict, decide

T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
STALE = timedelta(seconds=3)


def record(state: ShardState, seconds_ago: float) -> ControlRecord:
    """Replica bridge-1's word on shard 3, ``seconds_ago`` before T0."""
    return ControlRecord(3, "bridge-1", "run-a", state, T0 - timedelta(seconds=seconds_ago), {"crypto.s03-0": "c#1"})


def test_a_shard_never_owned_starts_with_no_gap() -> None:
    """No control record yet: nobody read these codes before, so there is nothing to report."""
    assert decide(None, T0, stale_after=STALE) == (Verdict.START, None)


def test_a_released_shard_starts_now_with_a_gap_from_the_release() -> None:
    """The previous owner flushed and let go 0.5 s ago: start at once; the gap runs from its release."""
    verdict, inherited = decide(record(ShardState.RELEASED, 0.5), T0, stale_after=STALE)
    assert verdict is Verdict.START
    assert inherited == Inherited(T0 - timedelta(seconds=0.5), "bridge-1", {"crypto.s03-0": "c#1"})


def test_a_live_owner_is_waited_for() -> None:
    """A heartbeat 1 s old: the owner is alive and finishing its flush, so wait for its release."""
    verdict, inherited = decide(record(ShardState.OWNED, 1), T0, stale_after=STALE)
    assert verdict is Verdict.WAIT
    assert inherited is not None


def test_a_silent_owner_is_dead_and_its_gap_starts_at_its_last_heartbeat() -> None:
    """Heartbeats stopped 7 s ago (killed): start at once; its data stopped about when it last said so."""
    verdict, inherited = decide(record(ShardState.OWNED, 7), T0, stale_after=STALE)
    assert verdict is Verdict.START
    assert inherited is not None
    assert inherited.since == T0 - timedelta(seconds=7)


@given(
    shard=st.integers(0, 255),
    owner=st.text(min_size=1, max_size=20),
    state=st.sampled_from(ShardState),
    at=st.datetimes(timezones=st.just(UTC)),
    connections=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3),
)
def test_control_records_survive_their_encoding(
    shard: int, owner: str, state: ShardState, at: datetime, connections: dict[str, str]
) -> None:
    """Whatever a replica writes, the next owner reads back the same record."""
    written = ControlRecord(shard, owner, "run", state, at, connections)
    assert ControlRecord.decode(written.encode()) == written


def test_anything_else_on_the_control_topic_is_no_record() -> None:
    """A tombstone, foreign JSON, a naive time or bytes that are not JSON decode to None, not an error."""
    naive = b'{"shard":1,"owner":"x","run_id":"r","state":"owned","at":"2026-12-02T12:00:00"}'
    for value in (None, b"", b"not json", b"[1,2]", b'{"shard":1}', naive, b'{"state":"gone"}'):
        assert ControlRecord.decode(value) is None
