"""Paging backwards over REST, de-duplicating overlaps, choosing final bars, and the shared budget, on literal pages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import RestError
from bridge.protocol.codes import KlineInterval
from bridge.rest.budget import RequestBudget
from bridge.rest.paging import KlinePager, bars_of, kline_body


def page(*starts: int) -> list[dict[str, Any]]:
    """Bars with these starts, newest first as the vendor sends them."""
    return [{"t": str(t), "o": "1", "h": "1", "l": "1", "c": "1", "v": "1", "vw": "1"} for t in sorted(starts)[::-1]]


def test_body_is_one_code_at_most_500_bars() -> None:
    """A request names one code and klineNum <= 500; several codes or more bars are refused before sending."""
    assert kline_body("BTCUSDT", KlineInterval.MIN_5, 500, 1786779000) == {
        "codes": "BTCUSDT", "klineType": 2, "klineNum": 500, "timestamp": 1786779000,
    }  # fmt: skip
    assert "timestamp" not in kline_body("BTCUSDT", KlineInterval.MIN_1, 2, None)
    with pytest.raises(ValueError, match="one code"):
        kline_body("BTCUSDT,ETHUSDT", KlineInterval.MIN_1, 10, None)
    with pytest.raises(ValueError, match="klineNum"):
        kline_body("BTCUSDT", KlineInterval.MIN_1, 501, None)


def test_bars_are_matched_by_symbol_not_position() -> None:
    """respList is taken from the entry whose s is the code; a missing code has no bars; junk is an error."""
    data = [{"s": "ETHUSDT", "respList": page(60)}, {"s": "BTCUSDT", "respList": page(120, 180)}]
    found = bars_of(data, "BTCUSDT")
    assert isinstance(found, list)
    assert [bar["t"] for bar in found] == ["180", "120"]
    assert bars_of(data, "DOGEUSDT") == []
    assert bars_of(None, "BTCUSDT") == []
    assert isinstance(bars_of({"s": "x"}, "BTCUSDT"), RestError)


def test_pages_overlap_and_stop_at_since() -> None:
    """Each next page is asked up to the oldest bar held (an overlap), and paging stops once since is reached."""
    pager = KlinePager(since=600, page_bars=3)
    assert pager.next_timestamp() is None
    pager.add(page(1080, 1140, 1200))
    assert pager.next_timestamp() == 1080
    assert pager.add(page(960, 1020, 1080)) == 2
    assert not pager.done
    pager.add(page(540, 840, 960))
    assert pager.done
    assert [int(bar["t"]) for bar in pager.final_bars()] == [840, 960, 1020, 1080, 1140]


def test_final_bars_exclude_the_newest_and_respect_until() -> None:
    """The newest bar held may be open and is left out; so is anything from the first WebSocket bar after the gap."""
    pager = KlinePager(since=0, page_bars=10)
    pager.add(page(60, 120, 180, 240))
    assert pager.done
    assert [int(bar["t"]) for bar in pager.final_bars()] == [60, 120, 180]
    assert [int(bar["t"]) for bar in pager.final_bars(until=180)] == [60, 120]


def test_the_newest_bar_is_final_once_the_websocket_has_a_later_one() -> None:
    """REST's newest bar (240) was fetched while open; the WebSocket's first bar after the gap is 300: 240 is
    final and published, or no one would publish it (seen at 60x simulated time under load)."""
    pager = KlinePager(since=0, page_bars=10)
    pager.add(page(60, 120, 180, 240))
    assert [int(bar["t"]) for bar in pager.final_bars(until=300)] == [60, 120, 180, 240]
    assert [int(bar["t"]) for bar in pager.final_bars(until=240)] == [60, 120, 180]


def test_a_server_ignoring_timestamp_does_not_loop() -> None:
    """A page that brings nothing older than what is held ends the paging."""
    pager = KlinePager(since=0, page_bars=2)
    pager.add(page(600, 660))
    pager.add(page(600, 660))
    assert pager.done


def test_clamp_marks_history_as_incomplete() -> None:
    """513 ends the paging; the item does not cover since when the earliest allowed time is after it."""
    pager = KlinePager(since=100, page_bars=2)
    pager.add(page(600, 660))
    pager.clamp(500)
    assert pager.done
    assert not pager.covers_since()


@given(st.sets(st.integers(0, 5000), max_size=60), st.integers(2, 20), st.integers(0, 5000))
def test_paging_any_history_gets_every_bar_once(history: set[int], size: int, since: int) -> None:
    """Against any sparse history served as the vendor does (newest first, up to timestamp inclusive), the pager
    ends and its final bars are exactly the history's bars from since, without the newest, each once, in order."""
    starts = sorted(history)
    pager = KlinePager(since=since, page_bars=size)
    for _ in range(1000):
        if pager.done:
            break
        cut = pager.next_timestamp()
        served = [t for t in starts if cut is None or t <= cut][-size:]
        pager.add(page(*served))
    assert pager.done
    expected = [t for t in starts[:-1] if t >= since]
    assert [int(bar["t"]) for bar in pager.final_bars()] == expected


def test_budget_spends_its_share_and_pauses_together() -> None:
    """The budget allows share x the key's rate, bursts one second's worth, and a pause stops every caller."""
    budget = RequestBudget(key_rate=10, share=0.5, now=0.0)
    assert [budget.take(0.0) for _ in range(5)] == [0.0] * 5
    assert budget.take(0.0) == pytest.approx(0.2)
    assert budget.take(0.2) == 0.0
    budget.pause(0.2, 3.0)
    assert budget.available(1.0) == 0.0
    assert budget.take(1.0) == pytest.approx(2.2)
    budget.resize(20, 5.0)
    assert budget.rate == 10
    with pytest.raises(ValueError, match="share"):
        RequestBudget(1, 0, 0.0)
