"""The pacer's credit arithmetic and round-robin allocation, pure: elapsed times passed in, no sockets."""

from __future__ import annotations

from collections import Counter, deque

from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.codes import KlineInterval
from bridge.records import Stream
from bridge.simulator.pacer import MAX_CREDIT_SECONDS, Due, StreamPacer


class Sink:
    """A stand-in connection: just a backlog, hashable by identity like the server's clients."""

    def __init__(self) -> None:
        self.backlog: deque[Due] = deque()


def pairs_of(sinks: list[Sink], codes: list[str]) -> list[tuple[Sink, Due]]:
    """Every (sink, trade of code) pair, sinks outermost, as the server lists them."""
    return [(sink, Due(Stream.TRADE, code)) for sink in sinks for code in codes]


def pacer(rate: float, limit: int | None = None, backlog_limit: int = 10_000) -> StreamPacer:
    """A trade pacer."""
    return StreamPacer(Stream.TRADE, rate, limit, backlog_limit)


def test_credit_carries_the_fraction_to_the_next_tick() -> None:
    """1000/s over 10.5 ms owes 10 pushes and keeps half a push, which the next tick completes."""
    paced = pacer(1000)
    assert paced.owed(0.0105) == 10
    assert paced.owed(0.0105) == 11
    assert paced.credit < 1e-9


def test_a_stall_owes_at_most_the_burst_cap() -> None:
    """Ten seconds without a tick owe only ``MAX_CREDIT_SECONDS`` of the rate, and at least one push."""
    assert pacer(1000).owed(10.0) == round(1000 * MAX_CREDIT_SECONDS)
    assert pacer(2).owed(10.0) == 1


def test_a_zero_rate_owes_nothing_and_touches_no_backlog() -> None:
    """Rate 0 hands out nothing however long the time."""
    sink = Sink()
    allocation = pacer(0).allocate(5.0, pairs_of([sink], ["A"]))
    assert allocation.handed == 0
    assert not sink.backlog


def test_pushes_go_round_robin_over_pairs_and_wake_each_sink_once() -> None:
    """Two sinks with two codes each get the pairs in turn; each sink that got work is woken once."""
    first, second = Sink(), Sink()
    allocation = pacer(1000).allocate(0.006, pairs_of([first, second], ["A", "B"]))
    assert allocation.handed == 6
    assert allocation.woken == {first, second}
    assert [due.code for due in first.backlog] == ["A", "B", "A", "B"]
    assert [due.code for due in second.backlog] == ["A", "B"]


def test_with_no_pairs_the_credit_is_dropped() -> None:
    """Time passed with nobody subscribed is not owed to the first subscriber."""
    paced = pacer(1000)
    paced.allocate(0.05, [])
    sink = Sink()
    assert paced.allocate(0.001, pairs_of([sink], ["A"])).handed == 1


def test_the_limit_stops_at_exactly_n_and_a_release_lets_one_more_go() -> None:
    """``limit`` reservations in total, over ticks; a released reservation can be handed again."""
    sink = Sink()
    paced = pacer(1000, limit=7)
    pairs = pairs_of([sink], ["A"])
    assert paced.allocate(0.005, pairs).handed == 5
    assert paced.allocate(0.005, pairs).handed == 2
    assert paced.allocate(0.005, pairs).handed == 0
    paced.release()
    assert paced.allocate(0.005, pairs).handed == 1
    assert paced.reserved == 7


def test_a_full_backlog_is_skipped_and_counted_while_others_still_get_theirs() -> None:
    """A sink whose backlog is at the limit gets nothing more; its share is counted as skipped."""
    slow, fast = Sink(), Sink()
    paced = pacer(1000, backlog_limit=2)
    allocation = paced.allocate(0.008, pairs_of([slow, fast], ["A"]))
    assert len(slow.backlog) == 2
    assert len(fast.backlog) == 2
    assert allocation.skipped == 4
    fast.backlog.clear()
    allocation = paced.allocate(0.004, pairs_of([slow, fast], ["A"]))
    assert (allocation.handed, allocation.skipped, allocation.woken) == (2, 2, {fast})


def test_kline_pairs_keep_their_interval() -> None:
    """A kline push owed names its code and interval."""
    sink = Sink()
    paced = StreamPacer(Stream.KLINE, 1000, None, 100)
    paced.allocate(0.002, [(sink, Due(Stream.KLINE, "A", KlineInterval.MIN_5))])
    assert list(sink.backlog) == [Due(Stream.KLINE, "A", KlineInterval.MIN_5)] * 2


@given(
    ticks=st.lists(st.floats(min_value=0.0, max_value=0.05), min_size=1, max_size=60),
    codes=st.integers(min_value=1, max_value=9),
)
def test_counts_per_pair_never_differ_by_more_than_one(ticks: list[float], codes: int) -> None:
    """Over any run of ticks, round-robin keeps every pair within one push of every other."""
    sink = Sink()
    paced = pacer(3000)
    pairs = pairs_of([sink], [f"C{i}" for i in range(codes)])
    handed = sum(paced.allocate(elapsed, pairs).handed for elapsed in ticks)
    counts = Counter(due.code for due in sink.backlog)
    assert sum(counts.values()) == handed
    if handed >= codes:
        assert max(counts.values()) - min(counts.values()) <= 1


@given(st.lists(st.floats(min_value=0.0, max_value=MAX_CREDIT_SECONDS / 2), min_size=1, max_size=60))
def test_below_the_cap_every_whole_push_of_credit_is_handed_out(ticks: list[float]) -> None:
    """While no tick hits the cap, the pushes handed out are the whole part of ``rate x total time``."""
    sink = Sink()
    paced = pacer(500)
    handed = sum(paced.allocate(elapsed, pairs_of([sink], ["A"])).handed for elapsed in ticks)
    assert abs(handed + paced.credit - 500 * sum(ticks)) < 1e-6
    assert 0 <= paced.credit < 1
