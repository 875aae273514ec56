"""Where delivery resumes at start when Kafka's committed position and the spool's checkpoint disagree (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.positions import Resumption, position_group, resumption


def test_a_position_at_or_ahead_of_the_checkpoint_wins() -> None:
    """The checkpoint is written once a second, so Kafka is usually a little ahead of it: resume after Kafka's."""
    assert resumption(2500, 2433, 1, None) == Resumption(2500, 0, 0)
    assert resumption(2433, 2433, 1, None) == Resumption(2433, 0, 0)


def test_records_the_topics_lost_are_delivered_again() -> None:
    """Measured on Kafka 4.4: the last acknowledged transaction (2349-2433) lost with its broker's stop, records
    and offset; the topics hold none of them, everything is on disk: those 85 are delivered again, none lost."""
    assert resumption(2348, 2433, 1, 2348) == Resumption(2348, 85, 0)


def test_records_the_topics_hold_are_not_delivered_again() -> None:
    """Also measured: the offset's commit marker lost, the records committed. The topics hold up to 1361, so
    nothing is delivered twice though the committed offset says 1297."""
    assert resumption(1297, 1361, 1, 1361) == Resumption(1361, 0, 0)


def test_a_partly_held_stretch_resumes_after_the_last_record_held() -> None:
    """Two transactions after the position: the first is in the topics, the second was lost."""
    assert resumption(100, 160, 1, 130) == Resumption(130, 30, 0)


def test_rewound_records_the_spool_deleted_are_counted_as_gone() -> None:
    """Segments are deleted once acknowledged: of the rewound 2349-2433, those below the oldest kept (2400) are gone,
    and with nothing on disk all of them are."""
    assert resumption(2348, 2433, 2400, 2348) == Resumption(2348, 85, 51)
    assert resumption(2348, 2433, 0, 2348) == Resumption(2348, 85, 85)


def test_when_the_topics_cannot_be_read_the_checkpoint_is_trusted() -> None:
    """A transaction held open on a partition, or brokers that do not answer: resume after the checkpoint, as
    before, and say it was not confirmed."""
    assert resumption(2348, 2433, 1, None) == Resumption(2433, 0, 0, confirmed=False)


@given(
    committed=st.integers(0, 10**6),
    checkpoint=st.integers(0, 10**6),
    oldest_kept=st.integers(0, 10**6),
    found=st.none() | st.integers(0, 10**6),
)
def test_resumption_stays_between_kafkas_position_and_the_checkpoint(
    committed: int, checkpoint: int, oldest_kept: int, found: int | None
) -> None:
    """Whatever the inputs: never behind Kafka's position, never past the checkpoint unless Kafka is ahead, never
    behind a record the topics hold, and gone never exceeds rewound."""
    resumed = resumption(committed, checkpoint, oldest_kept, found)
    assert resumed.position >= committed
    assert resumed.position <= max(committed, checkpoint)
    if found is not None and checkpoint > committed:
        assert resumed.position >= min(found, checkpoint)
    assert 0 <= resumed.gone <= resumed.rewound == max(checkpoint, committed) - resumed.position


def test_the_position_group_names_the_spool() -> None:
    """A spool made anew gets its own group, so it cannot inherit the offsets of the one it replaced."""
    assert position_group("bridge-0", "abc") != position_group("bridge-0", "abd")
