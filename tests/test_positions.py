"""Where delivery resumes at start: Kafka's committed position over the spool's own checkpoint (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.positions import Resumption, position_group, resumption


def test_without_a_position_in_kafka_the_checkpoint_says_where_to_resume() -> None:
    """No committed position (a first run, at-least-once, expired group offsets): resume after the checkpoint."""
    assert resumption(None, 2433, 1) == Resumption(2433, 0, 0)


def test_a_position_ahead_of_the_checkpoint_wins() -> None:
    """The checkpoint is written once a second, so Kafka is usually a little ahead of it: resume after Kafka's."""
    assert resumption(2500, 2433, 1) == Resumption(2500, 0, 0)


def test_kafka_behind_the_checkpoint_rewinds_to_what_kafka_holds() -> None:
    """The case measured on Kafka 4.4: the last acknowledged transaction (2349-2433) was lost with its broker's
    stop; everything is still on disk, so those 85 records are delivered again and none is lost."""
    assert resumption(2348, 2433, 1) == Resumption(2348, 85, 0)


def test_rewound_records_the_spool_deleted_are_counted_as_gone() -> None:
    """Segments are deleted once acknowledged: of the rewound 2349-2433, those below the oldest kept (2400) are gone."""
    assert resumption(2348, 2433, 2400) == Resumption(2348, 85, 51)


def test_an_empty_spool_has_nothing_left_of_what_kafka_lost() -> None:
    """Nothing on disk (offset 0 for the oldest kept): all the rewound records are gone."""
    assert resumption(2348, 2433, 0) == Resumption(2348, 85, 85)


@given(
    committed=st.none() | st.integers(0, 10**6),
    checkpoint=st.integers(0, 10**6),
    oldest_kept=st.integers(0, 10**6),
)
def test_resumption_never_skips_what_kafka_does_not_hold(
    committed: int | None, checkpoint: int, oldest_kept: int
) -> None:
    """Whatever the inputs, delivery resumes at Kafka's position when it has one, and gone never exceeds rewound."""
    resumed = resumption(committed, checkpoint, oldest_kept)
    assert resumed.position == (checkpoint if committed is None else committed)
    assert 0 <= resumed.gone <= resumed.rewound
    assert resumed.rewound == (0 if committed is None else max(checkpoint - committed, 0))


def test_the_position_group_names_the_spool() -> None:
    """A spool made anew gets its own group, so it cannot inherit the offsets of the one it replaced."""
    assert position_group("bridge-0", "abc") != position_group("bridge-0", "abd")
