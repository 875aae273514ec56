"""Our normalisers against the vendor's own (infoway-sdk's ``infoway._normalize``), as an oracle.

Deliberate differences, each pinned below:
* ``change_percent``: the SDK gives a ratio (``"-0.01%"`` -> -0.0001); we keep percent (-0.01),
  because the Avro field is named and documented in percent.
* depth: the SDK keeps the vendor's ``a``/``b`` names; we name them ``asks``/``bids``.
* trade ``td``: the SDK leaves it a number; we map it to a Side.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from infoway import _normalize as vendor

from bridge.protocol import normalize_depth, normalize_kline, normalize_trade
from bridge.records import PriceLevel
from tests.protocol.frames import PROVENANCE, fixture

TRADES = ["push_trade.json", "seed_trade.json"]
DEPTHS = ["push_depth.json", "seed_depth.json"]
KLINES = ["push_kline.json"]


def data(name: str) -> dict[str, Any]:
    """The data object of a fixture push."""
    payload: dict[str, Any] = orjson.loads(fixture(name))["data"]
    return payload


def assert_trade_agrees(payload: dict[str, Any]) -> None:
    """Symbol, instant and every decimal agree with the SDK's normalised trade."""
    ours = normalize_trade(payload, PROVENANCE)
    theirs = vendor.normalize_ws_trade(dict(payload))
    assert ours.symbol == theirs["s"]
    assert ours.event_time == theirs["t"]
    assert ours.price == theirs["p"]
    assert ours.size == theirs["v"]
    assert ours.amount == theirs["turnover"]


def assert_depth_agrees(payload: dict[str, Any]) -> None:
    """Symbol, instant and every level agree; the SDK's a is our asks and its b our bids."""
    ours = normalize_depth(payload, PROVENANCE)
    theirs = vendor.normalize_ws_depth(dict(payload))
    assert ours.symbol == theirs["s"]
    assert ours.event_time == theirs["t"]
    assert ours.asks == tuple(PriceLevel(p, s) for p, s in theirs["a"])
    assert ours.bids == tuple(PriceLevel(p, s) for p, s in theirs["b"])


def assert_kline_agrees(payload: dict[str, Any]) -> None:
    """Symbol, open time and prices agree; change_percent is percent for us and a ratio for the SDK."""
    ours = normalize_kline(payload, PROVENANCE)
    theirs = vendor.normalize_ws_kline(dict(payload))
    assert ours.symbol == theirs["s"]
    assert ours.open_time == theirs["t"]
    assert (ours.open, ours.high, ours.low, ours.close) == (theirs["o"], theirs["h"], theirs["l"], theirs["c"])
    assert ours.volume == theirs["v"]
    assert ours.amount == theirs["turnover"]
    assert ours.change == theirs["pca"]
    assert ours.change_percent == theirs["change_percent"] * 100


@pytest.mark.parametrize("name", TRADES)
def test_fixture_trades_agree_with_the_sdk(name: str) -> None:
    """Every trade fixture normalises as the vendor SDK does."""
    assert_trade_agrees(data(name))


@pytest.mark.parametrize("name", DEPTHS)
def test_fixture_depth_agrees_with_the_sdk(name: str) -> None:
    """Every depth fixture normalises as the vendor SDK does."""
    assert_depth_agrees(data(name))


@pytest.mark.parametrize("name", KLINES)
def test_fixture_klines_agree_with_the_sdk(name: str) -> None:
    """Every kline fixture normalises as the vendor SDK does, change_percent aside."""
    assert_kline_agrees(data(name))


def test_change_percent_differs_by_design() -> None:
    """The named difference: '-0.01%' is -0.01 for us (percent), -0.0001 for the SDK (ratio)."""
    payload = data("push_kline.json")
    assert normalize_kline(payload, PROVENANCE).change_percent == Decimal("-0.01")
    assert vendor.normalize_ws_kline(dict(payload))["change_percent"] == Decimal("-0.0001")


prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**9), allow_nan=False, places=8).map(str)
sizes = st.decimals(min_value=0, max_value=Decimal(10**9), allow_nan=False, places=5).map(str)
millis = st.integers(min_value=946_684_800_000, max_value=4_102_444_799_000)
symbols = st.sampled_from(["BTCUSDT", "AAPL.US", "0700.HK", "002594.SZ", "EURUSD", "XAUUSD"])


@given(s=symbols, t=millis, p=prices, v=sizes, td=st.sampled_from([0, 1, 2]))
def test_generated_trades_agree_with_the_sdk(s: str, t: int, p: str, v: str, td: int) -> None:
    """Generated trade pushes normalise as the SDK does."""
    assert_trade_agrees({"s": s, "t": t, "p": p, "v": v, "vw": str(Decimal(p) * Decimal(v)), "td": td})


@given(s=symbols, t=millis, levels=st.lists(st.tuples(prices, sizes), min_size=1, max_size=5))
def test_generated_depth_agrees_with_the_sdk(s: str, t: int, levels: list[tuple[str, str]]) -> None:
    """Generated books normalise as the SDK does."""
    column = [[p for p, _ in levels], [q for _, q in levels]]
    assert_depth_agrees({"s": s, "t": t, "a": column, "b": column})


@given(
    s=symbols,
    t=st.integers(min_value=946_684_800, max_value=4_102_444_799),
    ty=st.integers(min_value=1, max_value=12),
    o=prices,
    c=prices,
    v=sizes,
    pct=st.decimals(min_value=-100, max_value=1000, allow_nan=False, places=2),
)
def test_generated_klines_agree_with_the_sdk(s: str, t: int, ty: int, o: str, c: str, v: str, pct: Decimal) -> None:
    """Generated bars normalise as the SDK does (change_percent scaled by 100)."""
    high, low = max(Decimal(o), Decimal(c)), min(Decimal(o), Decimal(c))
    payload = {
        "s": s, "t": str(t), "ty": ty, "o": o, "h": str(high), "l": str(low), "c": c, "v": v,
        "vw": str(Decimal(c) * Decimal(v)), "pca": str(Decimal(c) - Decimal(o)), "pfr": f"{pct}%",
    }  # fmt: skip
    assert_kline_agrees(payload)
