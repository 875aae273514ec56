"""Normalisation of push payloads into records: exact decimals, UTC instants, a = asks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import MalformedPayload
from bridge.protocol import normalize_depth, normalize_kline, normalize_trade
from bridge.protocol.normalize import _DECIMAL_TEXT, parse_decimal
from bridge.records import PriceLevel, Side
from tests.protocol.frames import PROVENANCE, fixture


def payload(name: str) -> dict[str, Any]:
    """The data object of a fixture push."""
    data: dict[str, Any] = orjson.loads(fixture(name))["data"]
    return data


def test_production_trade_field_by_field() -> None:
    """The production trade capture becomes a TradeRecord with every field exact."""
    record = normalize_trade(payload("push_trade.json"), PROVENANCE)
    assert record.symbol == "BTCUSDT"
    assert record.event_time == datetime(2026, 8, 15, 6, 27, 7, 483000, tzinfo=UTC)
    assert record.price == Decimal("63039")
    assert record.size == Decimal("0.07933")
    assert record.amount == Decimal("5000.88387")
    assert record.side is Side.BUY
    assert record.trade_type is None
    assert record.provenance is PROVENANCE


def test_production_depth_field_by_field() -> None:
    """The production book: a are asks rising from the best ask, b are bids falling from the best bid."""
    record = normalize_depth(payload("push_depth.json"), PROVENANCE)
    assert record.symbol == "BTCUSDT"
    assert record.event_time == datetime(2026, 8, 15, 6, 27, 15, 640000, tzinfo=UTC)
    assert record.asks == (
        PriceLevel(Decimal("63039.00000000"), Decimal("45.06645000")),
        PriceLevel(Decimal("63039.01000000"), Decimal("0.00151000")),
        PriceLevel(Decimal("63039.02000000"), Decimal("0.00016000")),
        PriceLevel(Decimal("63039.15000000"), Decimal("0.00240000")),
        PriceLevel(Decimal("63039.51000000"), Decimal("0.00023000")),
    )
    assert record.bids == (
        PriceLevel(Decimal("63038.99000000"), Decimal("2.12269000")),
        PriceLevel(Decimal("63038.98000000"), Decimal("0.00070000")),
        PriceLevel(Decimal("63038.97000000"), Decimal("0.00016000")),
        PriceLevel(Decimal("63038.84000000"), Decimal("0.00024000")),
        PriceLevel(Decimal("63038.64000000"), Decimal("0.00009000")),
    )
    assert record.bids[0].price < record.asks[0].price


def test_production_kline_field_by_field() -> None:
    """The production bar: t is epoch seconds as a string, ty 1 is 1m, pfr stays in percent."""
    record = normalize_kline(payload("push_kline.json"), PROVENANCE)
    assert record.symbol == "BTCUSDT"
    assert record.interval == "1m"
    assert record.open_time == datetime(2026, 8, 15, 6, 27, 0, tzinfo=UTC)
    assert record.event_time == record.open_time
    assert (record.open, record.high, record.low, record.close) == (
        Decimal("63048.00000"),
        Decimal("63048.00000"),
        Decimal("63038.99000"),
        Decimal("63039.00000"),
    )
    assert record.volume == Decimal("19.90087")
    assert record.amount == Decimal("1254633.2367064")
    assert record.change == Decimal("-9.00000")
    assert record.change_percent == Decimal("-0.01")


def test_seed_trade() -> None:
    """The seed's AMZN trade: td 0 is UNKNOWN, and t is a plain UTC instant (no +8 h shift)."""
    record = normalize_trade(payload("seed_trade.json"), PROVENANCE)
    assert record.symbol == "AMZN.US"
    assert record.event_time == datetime(2025, 7, 18, 23, 59, 45, 720000, tzinfo=UTC)
    assert (record.price, record.size, record.amount) == (Decimal("225.975"), Decimal(1), Decimal("225.975"))
    assert record.side is Side.UNKNOWN


def test_seed_depth_has_best_bid_below_best_ask() -> None:
    """The seed labels a as bids, but its own numbers say a are the asks: best bid 326.88 < best ask 326.89."""
    record = normalize_depth(payload("seed_depth.json"), PROVENANCE)
    assert record.asks[0] == PriceLevel(Decimal("326.89"), Decimal(8))
    assert record.bids[0] == PriceLevel(Decimal("326.88"), Decimal(1452))
    assert [level.price for level in record.asks] == sorted(level.price for level in record.asks)
    assert [level.price for level in record.bids] == sorted((level.price for level in record.bids), reverse=True)
    assert record.event_time == datetime(2025, 7, 8, 7, 0, 3, 335000, tzinfo=UTC)


def test_seed_kline_rest_shape_is_refused() -> None:
    """The seed's kline uses the REST respList nesting, which the WebSocket never sends: refused, not guessed."""
    with pytest.raises(MalformedPayload) as caught:
        normalize_kline(payload("seed_kline_rest_shape.json"), PROVENANCE)
    assert caught.value.reason == "missing_field"


def test_seed_kline_bar_flattened_is_the_shenzhen_close() -> None:
    """The seed's bar in the WS shape (ty assumed 1): t=1751958000 is 07:00Z, 15:00 in Shenzhen; pc is accepted."""
    bar = payload("seed_kline_rest_shape.json")["respList"][0] | {"s": "002594.SZ", "ty": 1}
    record = normalize_kline(bar, PROVENANCE)
    assert record.open_time == datetime(2025, 7, 8, 7, 0, tzinfo=UTC)
    assert record.change_percent == Decimal("0.00")
    assert record.amount == Decimal("460900.80")


def test_trade_side_codes() -> None:
    """td 1 is BUY, 2 is SELL, 0 and absent are UNKNOWN; any other value is refused."""
    base = payload("push_trade.json")
    assert normalize_trade(base | {"td": 2}, PROVENANCE).side is Side.SELL
    assert normalize_trade(base | {"td": 0}, PROVENANCE).side is Side.UNKNOWN
    assert normalize_trade({k: v for k, v in base.items() if k != "td"}, PROVENANCE).side is Side.UNKNOWN
    with pytest.raises(MalformedPayload, match="unknown_side"):
        normalize_trade(base | {"td": 7}, PROVENANCE)


def test_trade_type_when_asked() -> None:
    """ty on an equity trade (includeTy) is kept as an integer."""
    assert normalize_trade(payload("seed_trade.json") | {"ty": 3}, PROVENANCE).trade_type == 3


def test_missing_amount_is_null_not_computed() -> None:
    """A trade without vw keeps amount None: nothing is filled in."""
    base = {k: v for k, v in payload("push_trade.json").items() if k != "vw"}
    assert normalize_trade(base, PROVENANCE).amount is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"p": None}, "not_a_decimal"),
        ({"p": "abc"}, "not_a_decimal"),
        ({"p": "NaN"}, "not_a_decimal"),
        ({"p": "Infinity"}, "not_a_decimal"),
        ({"p": "1_000"}, "not_a_decimal"),
        ({"p": " 1.5"}, "not_a_decimal"),
        ({"p": 63039.5}, "binary_float"),
        ({"p": True}, "not_a_decimal"),
        ({"v": "-1"}, "negative_size"),
        ({"t": "soon"}, "not_an_integer"),
        ({"t": 1786775227.483}, "not_an_integer"),
        ({"t": 1786775227}, "time_out_of_range"),
        ({"t": 10**30}, "time_out_of_range"),
        ({"s": ""}, "missing_field"),
        ({"s": 5}, "missing_field"),
    ],
)
def test_bad_trade_values_are_refused_with_a_reason(change: dict[str, Any], reason: str) -> None:
    """A bad value is refused with a stable reason (for the dead-letter topic), never coerced."""
    with pytest.raises(MalformedPayload) as caught:
        normalize_trade(payload("push_trade.json") | change, PROVENANCE)
    assert caught.value.reason == reason


@pytest.mark.parametrize("field", ["s", "t", "p", "v"])
def test_missing_trade_fields_are_refused(field: str) -> None:
    """Each required trade field, when absent, is named in the refusal."""
    data = {k: v for k, v in payload("push_trade.json").items() if k != field}
    with pytest.raises(MalformedPayload) as caught:
        normalize_trade(data, PROVENANCE)
    assert caught.value.reason == "missing_field"
    assert caught.value.detail == field


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"a": [["1"], ["1", "2"]]}, "bad_book_side"),
        ({"a": [["1"]]}, "bad_book_side"),
        ({"b": "x"}, "bad_book_side"),
        ({"a": None}, "missing_field"),
        ({"b": [["1"], ["-2"]]}, "negative_size"),
    ],
)
def test_bad_depth_is_refused(change: dict[str, Any], reason: str) -> None:
    """Book sides that are not two equal-length columns of decimals are refused."""
    with pytest.raises(MalformedPayload) as caught:
        normalize_depth(payload("push_depth.json") | change, PROVENANCE)
    assert caught.value.reason == reason


def test_depth_with_fewer_levels() -> None:
    """A book may carry fewer than five levels, and an empty side is an empty tuple."""
    record = normalize_depth(payload("push_depth.json") | {"a": [["1.5"], ["2"]], "b": [[], []]}, PROVENANCE)
    assert record.asks == (PriceLevel(Decimal("1.5"), Decimal(2)),)
    assert record.bids == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"ty": 13}, "unknown_interval"), ({"ty": None}, "missing_field"), ({"o": 1.5}, "binary_float")],
)
def test_bad_kline_is_refused(change: dict[str, Any], reason: str) -> None:
    """Unknown intervals and float prices are refused."""
    with pytest.raises(MalformedPayload) as caught:
        normalize_kline(payload("push_kline.json") | change, PROVENANCE)
    assert caught.value.reason == reason


def test_kline_time_unit_is_seconds_even_as_a_number() -> None:
    """The kline t unit is seconds by field, never guessed from the digits: a millisecond value is refused."""
    base = payload("push_kline.json")
    assert normalize_kline(base | {"t": 1786775220}, PROVENANCE).open_time == datetime(2026, 8, 15, 6, 27, tzinfo=UTC)
    with pytest.raises(MalformedPayload, match="time_out_of_range"):
        normalize_kline(base | {"t": "1786775220000"}, PROVENANCE)


def test_kline_interval_labels() -> None:
    """Every vendor interval 1-12 has a label."""
    base = payload("push_kline.json")
    labels = [normalize_kline(base | {"ty": ty}, PROVENANCE).interval for ty in range(1, 13)]
    assert labels == ["1m", "5m", "15m", "30m", "1h", "2h", "4h", "1d", "1w", "1M", "1Q", "1y"]


def test_kline_optional_change_fields() -> None:
    """pca and pfr may be absent: the record carries None rather than a made-up zero."""
    base = {k: v for k, v in payload("push_kline.json").items() if k not in ("pca", "pfr")}
    record = normalize_kline(base, PROVENANCE)
    assert (record.change, record.change_percent) == (None, None)


decimal_text = (
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 30).map(str)
)
sizes = st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=8).map(str)
millis = st.integers(
    min_value=int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000),
    max_value=int(datetime(2099, 12, 31, tzinfo=UTC).timestamp() * 1000),
)


@given(symbol=st.text(min_size=1).filter(str.strip), t=millis, p=decimal_text, v=sizes, td=st.sampled_from([0, 1, 2]))
def test_generated_trades_round_trip_exactly(symbol: str, t: int, p: str, v: str, td: int) -> None:
    """Any valid trade push, through JSON and back, gives the same decimals (scale included) and instant."""
    frame = orjson.dumps({"code": 10002, "data": {"s": symbol, "t": t, "p": p, "v": v, "vw": p, "td": td}})
    data = orjson.loads(frame)["data"]
    record = normalize_trade(data, PROVENANCE)
    assert record.symbol == symbol
    assert str(record.price) == str(Decimal(p))
    assert record.price.as_tuple() == Decimal(p).as_tuple()
    assert record.size == Decimal(v)
    assert record.event_time == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t)
    assert int(record.event_time.timestamp() * 1000) in (t, t - 1, t + 1)
    assert (record.event_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) == t


@given(
    asks=st.lists(st.tuples(decimal_text, sizes), max_size=5),
    bids=st.lists(st.tuples(decimal_text, sizes), max_size=5),
    t=millis,
)
def test_generated_depth_round_trips(asks: list[tuple[str, str]], bids: list[tuple[str, str]], t: int) -> None:
    """Transposed columns come back as levels in the vendor's order with exact decimals."""

    def columns(levels: list[tuple[str, str]]) -> list[list[str]]:
        return [[price for price, _ in levels], [size for _, size in levels]]

    data = {"s": "X", "t": t, "a": columns(asks), "b": columns(bids)}
    record = normalize_depth(orjson.loads(orjson.dumps(data)), PROVENANCE)
    assert record.asks == tuple(PriceLevel(Decimal(p), Decimal(s)) for p, s in asks)
    assert record.bids == tuple(PriceLevel(Decimal(p), Decimal(s)) for p, s in bids)


@given(st.text())
def test_parse_decimal_accepts_only_decimal_text(text: str) -> None:
    """parse_decimal either returns the exact Decimal of the text or refuses it; it never raises otherwise."""
    try:
        value = parse_decimal(text, "p")
    except MalformedPayload:
        return
    assert value == Decimal(text)
    assert value.is_finite()


@given(st.one_of(st.text(alphabet="0123456789.+-eE _", max_size=12), st.text(max_size=8)))
def test_the_quick_decimal_check_accepts_what_the_pattern_accepts(text: str) -> None:
    """parse_decimal's regex-free path for plain digits never accepts or refuses text differently from the pattern."""
    try:
        parse_decimal(text, "p")
        accepted = True
    except MalformedPayload:
        accepted = False
    assert accepted == (_DECIMAL_TEXT.fullmatch(text) is not None)
