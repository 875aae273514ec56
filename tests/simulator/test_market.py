"""The market generators, pure: no event loop, literal expectations and hypothesis properties."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocol.codes import KlineInterval
from bridge.simulator.bars import bar_start
from bridge.simulator.market import BUSINESSES, Market, fixed, plain
from tests.simulator.support import DECIMAL_TEXT

# 2020-01-01 .. 2090-01-01 in epoch milliseconds: the range a real clock can show.
NOW_MS = st.integers(min_value=1_577_836_800_000, max_value=3_786_912_000_000)
SEEDS = st.integers(min_value=0, max_value=2**32)
SYMBOLS = st.sampled_from(["BTCUSDT", "DOGEUSDT", "EURUSD", "AAPL.US", "0700.HK", "600519.SH"]) | st.from_regex(
    r"[A-Z0-9]{2,8}(\.[A-Z]{2})?", fullmatch=True
)


def decimal_of(text: object) -> Decimal:
    """A decimal string as the vendor writes it, parsed exactly; anything else fails the test."""
    assert isinstance(text, str)
    assert DECIMAL_TEXT.fullmatch(text), text
    value = Decimal(text)
    assert value.is_finite()
    return value


def scale(text: str) -> int:
    """Decimals written in a decimal string (``"63039.00000000"`` has 8)."""
    return len(text.partition(".")[2])


@settings(max_examples=60, deadline=None)
@given(SEEDS, st.sampled_from(BUSINESSES), SYMBOLS, NOW_MS, st.integers(min_value=1, max_value=30))
def test_trades_are_exact_decimals_with_amount_equal_to_price_times_size(
    seed: int, business: str, symbol: str, now_ms: int, count: int
) -> None:
    """Every trade carries finite plain decimals, an epoch-ms int ``t`` and ``vw == p * v`` exactly."""
    instrument = Market(business, seed).instrument(symbol)
    for pushed in range(count):
        trade = instrument.trade(now_ms)
        assert trade["s"] == symbol
        assert trade["t"] == now_ms + pushed
        assert trade["td"] in {0, 1, 2}
        price, size, amount = decimal_of(trade["p"]), decimal_of(trade["v"]), decimal_of(trade["vw"])
        assert price > 0
        assert size > 0
        assert amount == price * size


@settings(max_examples=60, deadline=None)
@given(SEEDS, st.sampled_from(BUSINESSES), SYMBOLS, NOW_MS, st.integers(min_value=1, max_value=30))
def test_depth_has_five_levels_a_side_with_best_bid_below_best_ask(
    seed: int, business: str, symbol: str, now_ms: int, count: int
) -> None:
    """``a`` asks rise from the best ask, ``b`` bids fall from the best bid, and the book never crosses."""
    instrument = Market(business, seed).instrument(symbol)
    for pushed in range(count):
        book = instrument.depth(now_ms)
        assert book["s"] == symbol
        assert book["t"] == now_ms + pushed
        ask_prices, ask_sizes = ([decimal_of(x) for x in column] for column in book["a"])
        bid_prices, bid_sizes = ([decimal_of(x) for x in column] for column in book["b"])
        assert len(ask_prices) == len(ask_sizes) == len(bid_prices) == len(bid_sizes) == 5
        assert ask_prices == sorted(set(ask_prices))
        assert bid_prices == sorted(set(bid_prices), reverse=True)
        assert 0 < bid_prices[0] < ask_prices[0]
        assert all(size > 0 for size in ask_sizes + bid_sizes)


@settings(max_examples=60, deadline=None)
@given(
    SEEDS,
    st.sampled_from(BUSINESSES),
    SYMBOLS,
    st.sampled_from(KlineInterval),
    st.lists(st.integers(min_value=0, max_value=10 * 86400 * 1000), min_size=1, max_size=20),
    NOW_MS,
)
def test_klines_are_aligned_bars_whose_low_and_high_bracket_open_and_close(
    seed: int, business: str, symbol: str, interval: KlineInterval, steps: list[int], start_ms: int
) -> None:
    """A bar's ``t`` is its aligned start in seconds (a string), ``l <= o, c <= h``, ``pca == c - o``."""
    instrument = Market(business, seed).instrument(symbol)
    now_ms = start_ms
    for step in steps:
        now_ms += step
        bar = instrument.kline(interval, now_ms)
        assert bar["s"] == symbol
        assert bar["ty"] == int(interval)
        assert isinstance(bar["t"], str)
        assert bar["t"].isdigit()
        assert int(bar["t"]) == bar_start(interval, now_ms // 1000)
        open_, high, low, close = (decimal_of(bar[key]) for key in ("o", "h", "l", "c"))
        assert low <= min(open_, close) <= max(open_, close) <= high
        assert Decimal(bar["pca"]) == close - open_
        assert decimal_of(bar["v"]) > 0
        assert decimal_of(bar["vw"]) > 0
        assert bar["pfr"].endswith("%")
        percent = Decimal(bar["pfr"].removesuffix("%"))
        assert percent.as_tuple().exponent == -2
        assert abs(percent - (close - open_) / open_ * 100) <= Decimal("0.005")


def test_scales_vary_like_the_production_captures() -> None:
    """Crypto trades are trimmed, books padded to 8 decimals and bars to 5; stocks trade whole shares."""
    now_ms = 1_786_775_227_483
    crypto = Market("crypto", seed=1).instrument("BTCUSDT")
    trade_scales = {scale(crypto.trade(now_ms)["p"]) for _ in range(200)}
    assert trade_scales == {0, 1, 2}
    book = crypto.depth(now_ms)
    assert {scale(text) for column in book["a"] + book["b"] for text in column} == {8}
    bar = crypto.kline(KlineInterval.MIN_1, now_ms)
    assert {scale(bar[key]) for key in ("o", "h", "l", "c", "v", "pca")} == {5}
    stock = Market("stock", seed=1).instrument("AAPL.US")
    assert all(scale(stock.trade(now_ms)["v"]) == 0 for _ in range(50))
    assert scale(Market("common", seed=1).instrument("EURUSD").depth(now_ms)["a"][0][0]) == 5


def test_same_seed_gives_same_values_whatever_the_order_of_symbols() -> None:
    """A seed fixes each symbol's path independently of which symbols were asked for first."""
    now_ms = 1_786_775_227_483
    first, second = Market("crypto", seed=42), Market("crypto", seed=42)
    first.instrument("ETHUSDT").trade(now_ms)
    assert first.trade_frame("BTCUSDT", now_ms) == second.trade_frame("BTCUSDT", now_ms)
    assert Market("crypto", seed=43).trade_frame("BTCUSDT", now_ms) != second.trade_frame("BTCUSDT", now_ms)


def test_frames_are_compact_json_with_the_production_envelope() -> None:
    """A frame is ``{"code":..,"data":{..}}`` with no spaces, like ``frames/push_trade.json``."""
    frame = Market("crypto", seed=1).trade_frame("BTCUSDT", 1_786_775_227_483)
    assert frame.startswith(b'{"code":10002,"data":{"p":"')
    assert b" " not in frame
    assert list(json.loads(frame)["data"]) == ["p", "s", "t", "td", "v", "vw"]


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.sampled_from(BUSINESSES), SYMBOLS | st.text(min_size=1, max_size=6), NOW_MS)
def test_rendered_frames_are_byte_for_byte_what_orjson_writes(
    seed: int, business: str, symbol: str, now_ms: int
) -> None:
    """Trades and books written from integers equal orjson's compact encoding of the same values, odd symbols too."""
    market = Market(business, seed)
    for _ in range(5):
        for frame in (market.trade_frame(symbol, now_ms), market.depth_frame(symbol, now_ms)):
            assert orjson.dumps(orjson.loads(frame)) == frame


@pytest.mark.parametrize(
    ("value", "places", "expected"),
    [
        (Decimal("63039"), 8, "63039.00000000"),
        (Decimal("0.123456789"), 5, "0.123456789"),
        (Decimal("-9.00"), 5, "-9.00000"),
        (Decimal("225.975"), 0, "225.975"),
    ],
)
def test_fixed_pads_but_never_drops_digits(value: Decimal, places: int, expected: str) -> None:
    """Padding to a scale adds zeros and never rounds a finer value."""
    assert fixed(value, places) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Decimal("63039.00"), "63039"), (Decimal("63000"), "63000"), (Decimal("0.07930"), "0.0793")],
)
def test_plain_trims_zeros_without_an_exponent(value: Decimal, expected: str) -> None:
    """Trimming never produces scientific notation such as ``6.3E+4``."""
    assert plain(value) == expected


def test_market_refuses_a_business_without_data() -> None:
    """Only the five businesses have data; the server keeps any other silent instead."""
    with pytest.raises(ValueError, match="no market data"):
        Market("forex", seed=1)


@given(st.lists(st.tuples(st.sampled_from(["trade", "depth"]), st.integers(min_value=0, max_value=50)), max_size=80))
def test_event_times_strictly_increase_per_stream_and_follow_the_clock_when_they_can(
    steps: list[tuple[str, int]],
) -> None:
    """Trades and books of one code never share a ``t``: a repeat (or a clock step back) is bumped by 1 ms."""
    instrument = Market("crypto", seed=5).instrument("BTCUSDT")
    now_ms = 1_786_775_227_000
    last = {"trade": -1, "depth": -1}
    for stream, step in steps:
        now_ms += step - 10  # the clock may stand still or go back
        t = instrument.trade(now_ms)["t"] if stream == "trade" else instrument.depth(now_ms)["t"]
        assert t == max(now_ms, last[stream] + 1)
        last[stream] = t


def test_the_streams_of_one_code_keep_their_own_times() -> None:
    """A trade and a book at the same instant both carry that instant: uniqueness is per stream."""
    instrument = Market("crypto", seed=5).instrument("BTCUSDT")
    assert instrument.trade(1000)["t"] == instrument.depth(1000)["t"] == 1000
    assert instrument.trade(1000)["t"] == instrument.depth(1000)["t"] == 1001
