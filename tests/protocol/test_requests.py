"""Request frames and connection planning."""

from __future__ import annotations

import orjson
import pytest

from bridge.errors import LocalProtocolError
from bridge.protocol import KlineInterval, Subscription, plan_connections
from bridge.protocol.requests import heartbeat_frame, subscribe_frame, unsubscribe_frame
from bridge.records import Stream


def test_trade_subscribe_merges_codes_in_one_frame() -> None:
    """All trade codes travel in one 10000 frame as one comma-separated string."""
    frame = orjson.loads(subscribe_frame(Subscription(Stream.TRADE, ("BTCUSDT", "ETHUSDT")), "t1"))
    assert frame == {"code": 10000, "trace": "t1", "data": {"codes": "BTCUSDT,ETHUSDT"}}


def test_depth_subscribe() -> None:
    """Depth subscribes are 10003 with the merged codes."""
    frame = orjson.loads(subscribe_frame(Subscription(Stream.DEPTH, ("AAPL.US",)), "t2"))
    assert frame == {"code": 10003, "trace": "t2", "data": {"codes": "AAPL.US"}}


def test_kline_subscribe_uses_arr_per_interval() -> None:
    """Kline subscribes are 10006 with one arr entry per interval, all in one frame."""
    subscription = Subscription(Stream.KLINE, ("A", "B"), (KlineInterval.MIN_1, KlineInterval.DAY_1))
    frame = orjson.loads(subscribe_frame(subscription, "t3"))
    assert frame == {
        "code": 10006,
        "trace": "t3",
        "data": {"arr": [{"type": 1, "codes": "A,B"}, {"type": 8, "codes": "A,B"}]},
    }


def test_unsubscribe_frames() -> None:
    """Unsubscribes are 11000/11001/11002; klines name their intervals in klineTypes."""
    assert orjson.loads(unsubscribe_frame(Subscription(Stream.TRADE, ("A",)), "u"))["code"] == 11000
    assert orjson.loads(unsubscribe_frame(Subscription(Stream.DEPTH, ("A",)), "u"))["code"] == 11001
    kline = orjson.loads(
        unsubscribe_frame(Subscription(Stream.KLINE, ("A",), (KlineInterval.MIN_1, KlineInterval.MIN_5)), "u")
    )
    assert kline == {"code": 11002, "trace": "u", "data": {"codes": "A", "klineTypes": "1,2"}}


def test_heartbeat_frames() -> None:
    """The heartbeat is 10010; asking for an answer adds data.ack = 1."""
    assert orjson.loads(heartbeat_frame("h")) == {"code": 10010, "trace": "h"}
    assert orjson.loads(heartbeat_frame("h", want_ack=True)) == {"code": 10010, "trace": "h", "data": {"ack": 1}}


def test_subscription_needs_codes_and_kline_intervals() -> None:
    """Empty subscriptions and kline subscriptions without intervals are our bug, caught early."""
    with pytest.raises(LocalProtocolError):
        Subscription(Stream.TRADE, ())
    with pytest.raises(LocalProtocolError):
        Subscription(Stream.KLINE, ("A",))


def test_1500_codes_make_three_connections() -> None:
    """1,500 codes under the default cap of 600 split into connections of 600, 600 and 300."""
    codes = [f"C{i}" for i in range(1500)]
    plans = plan_connections("stock", codes, [Stream.TRADE, Stream.DEPTH])
    assert [len(plan.codes) for plan in plans] == [600, 600, 300]
    assert [plan.name for plan in plans] == ["stock-0", "stock-1", "stock-2"]
    assert [code for plan in plans for code in plan.codes] == codes
    assert all([s.stream for s in plan.subscriptions] == [Stream.TRADE, Stream.DEPTH] for plan in plans)


def test_planning_drops_duplicates_and_is_stable() -> None:
    """Duplicate codes are subscribed once and the same config always gives the same plan."""
    first = plan_connections("crypto", ["A", "B", "A", "C"], [Stream.TRADE], max_codes_per_connection=2)
    second = plan_connections("crypto", ["A", "B", "A", "C"], [Stream.TRADE], max_codes_per_connection=2)
    assert first == second
    assert [plan.codes for plan in first] == [("A", "B"), ("C",)]


def test_kline_intervals_only_on_kline_subscriptions() -> None:
    """Intervals go with the kline subscription and nowhere else."""
    (plan,) = plan_connections("crypto", ["A"], [Stream.TRADE, Stream.KLINE], [KlineInterval.HOUR_1])
    assert [(s.stream, s.kline_intervals) for s in plan.subscriptions] == [
        (Stream.TRADE, ()),
        (Stream.KLINE, (KlineInterval.HOUR_1,)),
    ]


def test_interval_names_and_numbers() -> None:
    """Config may name intervals by vendor number or label."""
    assert KlineInterval.parse(5) is KlineInterval.HOUR_1
    assert KlineInterval.parse("5") is KlineInterval.HOUR_1
    assert KlineInterval.parse("1h") is KlineInterval.HOUR_1
    assert KlineInterval.parse("1d") is KlineInterval.DAY_1
    with pytest.raises(ValueError, match="unknown kline interval"):
        KlineInterval.parse("3h")


def test_connection_names_continue_across_entries_of_one_business() -> None:
    """A second plan of the same business numbers its connections on, so names never collide."""
    first = plan_connections("stock", ["A", "B"], [Stream.TRADE], max_codes_per_connection=1)
    second = plan_connections("stock", ["C"], [Stream.DEPTH], first_index=len(first))
    assert [plan.name for plan in first + second] == ["stock-0", "stock-1", "stock-2"]
