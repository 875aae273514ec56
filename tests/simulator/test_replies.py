"""The simulator's reading of client frames, pure: literal frames in, literal replies out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.protocol.codes import KlineInterval
from bridge.protocol.requests import Subscription, heartbeat_frame, subscribe_frame, unsubscribe_frame
from bridge.records import Stream
from bridge.simulator.replies import ClientInfo, answer

AT = datetime(2026, 8, 15, 12, 0, tzinfo=UTC)
COLON = "\uff1a"
"""The full-width colon of the vendor's error messages (``frames/error_507.json``)."""


def client(business: str = "crypto") -> ClientInfo:
    """A fresh connection's state."""
    return ClientInfo(1, business, AT)


def reply(info: ClientInfo, frame: str | bytes, monotonic: float = 0.0) -> dict[str, Any] | None:
    """Feed one frame and parse the reply (``None`` when there is none)."""
    text = answer(info, frame, received_at=AT, monotonic=monotonic)
    if text is None:
        return None
    parsed = json.loads(text)
    assert isinstance(parsed, dict)
    return parsed


def test_the_bridges_own_subscribe_frames_are_acked_with_their_trace() -> None:
    """The frames ``bridge.protocol.requests`` builds are accepted and acked 10001/10004/10007."""
    info = client()
    trades = Subscription(Stream.TRADE, ("BTCUSDT", "ETHUSDT"))
    depth = Subscription(Stream.DEPTH, ("BTCUSDT",))
    klines = Subscription(Stream.KLINE, ("BTCUSDT",), (KlineInterval.MIN_1, KlineInterval.HOUR_1))
    assert reply(info, subscribe_frame(trades, "t1")) == {"code": 10001, "trace": "t1", "msg": "ok"}
    assert reply(info, subscribe_frame(depth, "t2")) == {"code": 10004, "trace": "t2", "msg": "ok"}
    assert reply(info, subscribe_frame(klines, "t3")) == {"code": 10007, "trace": "t3", "msg": "ok"}
    assert list(info.trades) == ["BTCUSDT", "ETHUSDT"]
    assert list(info.depth) == ["BTCUSDT"]
    assert list(info.klines) == [("BTCUSDT", KlineInterval.MIN_1), ("BTCUSDT", KlineInterval.HOUR_1)]
    assert info.codes == {"BTCUSDT", "ETHUSDT"}


def test_kline_unsubscribe_drops_only_the_named_intervals() -> None:
    """``klineTypes`` limits an 11002 to its intervals; the ack is 11010 with the trace."""
    info = client()
    both = Subscription(Stream.KLINE, ("A", "B"), (KlineInterval.MIN_1, KlineInterval.MIN_5))
    reply(info, subscribe_frame(both, "s"))
    one = Subscription(Stream.KLINE, ("A",), (KlineInterval.MIN_1,))
    assert reply(info, unsubscribe_frame(one, "u")) == {"code": 11010, "trace": "u", "msg": "ok"}
    assert set(info.klines) == {("A", KlineInterval.MIN_5), ("B", KlineInterval.MIN_1), ("B", KlineInterval.MIN_5)}


def test_kline_unsubscribe_without_types_drops_every_interval_of_the_codes() -> None:
    """Without ``klineTypes`` the vendor drops every interval of those codes (protocol page)."""
    info = client()
    reply(info, subscribe_frame(Subscription(Stream.KLINE, ("A", "B"), tuple(KlineInterval)[:3]), "s"))
    frame = json.dumps({"code": 11002, "trace": "u", "data": {"codes": "A"}})
    assert reply(info, frame) == {"code": 11010, "trace": "u", "msg": "ok"}
    assert {code for code, _ in info.klines} == {"B"}


def test_trade_unsubscribe_keeps_other_codes_and_streams() -> None:
    """11000 removes trade codes only; depth of the same code stays."""
    info = client()
    reply(info, subscribe_frame(Subscription(Stream.TRADE, ("A", "B")), "1"))
    reply(info, subscribe_frame(Subscription(Stream.DEPTH, ("A",)), "2"))
    reply(info, unsubscribe_frame(Subscription(Stream.TRADE, ("A",)), "3"))
    assert list(info.trades) == ["B"]
    assert list(info.depth) == ["A"]


def test_heartbeat_is_answered_only_when_it_asks() -> None:
    """10010 gets 10011 with the trace only when ``data.ack`` is 1."""
    info = client()
    assert reply(info, heartbeat_frame("quiet")) is None
    assert reply(info, heartbeat_frame("loud", want_ack=True)) == {"code": 10011, "trace": "loud", "msg": "ok"}


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ('{"code":10000,"trace":"x"}', 507, f"Param lost{COLON}data"),
        ('{"code":10000,"trace":"x","data":{}}', 507, f"Param lost{COLON}codes"),
        ('{"code":10006,"trace":"x","data":{"codes":"A"}}', 507, f"Param lost{COLON}arr"),
        ('{"code":10006,"trace":"x","data":{"arr":[{"codes":"A"}]}}', 507, f"Param lost{COLON}type"),
        ('{"code":10006,"trace":"x","data":{"arr":[{"type":13,"codes":"A"}]}}', 506, f"Param error{COLON}type"),
        ('{"code":11002,"trace":"x","data":{"codes":"A","klineTypes":"1,x"}}', 506, f"Param error{COLON}type"),
        ('{"code":10000,"trace":"x","data":{"codes":7}}', 506, f"Param error{COLON}codes"),
        ('{"code":10000,"trace":"x","data":{"codes":" , "}}', 506, f"Param error{COLON}codes"),
        ('{"code":12345,"trace":"x","data":{}}', 506, f"Param error{COLON}code 12345"),
    ],
)
def test_bad_requests_get_the_vendors_error_frames_and_change_nothing(frame: str, code: int, message: str) -> None:
    """Errors echo the trace as ``traceId`` with the vendor's wording; a refused frame changes nothing."""
    info = client()
    reply(info, subscribe_frame(Subscription(Stream.TRADE, ("KEEP",)), "k"))
    assert reply(info, frame) == {"traceId": "x", "code": code, "msg": message}
    assert list(info.trades) == ["KEEP"]
    assert not info.klines


@pytest.mark.parametrize("frame", ["not json", b"\x00\x01", "[1, 2]", '"text"'])
def test_a_frame_that_is_not_a_json_object_gets_515(frame: str | bytes) -> None:
    """515 has no trace to echo, so ``traceId`` is empty."""
    assert reply(client(), frame) == {"traceId": "", "code": 515, "msg": "Param not json"}


def test_stock_answers_a_non_json_frame_in_bare_text() -> None:
    """On stock, 515 comes as the bare text ``Param not json`` (protocol page)."""
    assert answer(client("stock"), "hello", received_at=AT, monotonic=0.0) == "Param not json"


def test_every_frame_is_counted_with_its_time_and_code() -> None:
    """Frames are remembered with wall and monotonic times, for a 60-per-minute budget later."""
    info = client()
    reply(info, heartbeat_frame("h"), monotonic=1.5)
    reply(info, "garbage", monotonic=2.5)
    assert info.frames_received == 2
    assert [(frame.monotonic, frame.code) for frame in info.frames] == [(1.5, 10010), (2.5, None)]
    assert all(frame.received_at.tzinfo is UTC for frame in info.frames)


def test_a_business_without_data_is_acked_but_serves_nothing() -> None:
    """Like the vendor, a wrong business is acked and then stays silent."""
    info = client("forex")
    assert reply(info, subscribe_frame(Subscription(Stream.TRADE, ("EURUSD",)), "t")) == {
        "code": 10001,
        "trace": "t",
        "msg": "ok",
    }
    assert not info.serves_data
    assert client("crypto").serves_data


def test_a_subscribe_past_the_code_cap_is_refused_with_the_prefixed_505_and_adds_nothing() -> None:
    """601 codes on a 600 cap get ``Subscribe fail:`` and 505 naming the cap; 600 are accepted."""
    info = client()
    codes = [f"C{i}" for i in range(601)]
    too_many = json.dumps({"code": 10000, "trace": "big", "data": {"codes": ",".join(codes)}})
    assert answer(info, too_many, received_at=AT, monotonic=0.0, max_codes=600) == (
        'Subscribe fail: {"traceId":"big","code":505,"msg":"Single WS subscribe exceeds the limit 600"}'
    )
    assert not info.codes
    reply(info, subscribe_frame(Subscription(Stream.TRADE, tuple(codes[:600])), "fits"))
    assert len(info.codes) == 600


def test_the_code_cap_counts_distinct_codes_over_all_streams() -> None:
    """A code held on another stream costs nothing; a new one past the cap is refused on any stream."""
    info = client()

    def subscribe(frame: str) -> str | None:
        return answer(info, frame, received_at=AT, monotonic=0.0, max_codes=2)

    assert (
        subscribe(subscribe_frame(Subscription(Stream.TRADE, ("A", "B")), "t"))
        == '{"code":10001,"trace":"t","msg":"ok"}'
    )
    depth_same = subscribe(subscribe_frame(Subscription(Stream.DEPTH, ("A", "B")), "d"))
    assert depth_same == '{"code":10004,"trace":"d","msg":"ok"}'
    kline_new = subscribe(subscribe_frame(Subscription(Stream.KLINE, ("C",), (KlineInterval.MIN_1,)), "k"))
    assert kline_new is not None
    assert kline_new.startswith('Subscribe fail: {"traceId":"k","code":505,')
    assert not info.klines
    reply(info, unsubscribe_frame(Subscription(Stream.TRADE, ("B",)), "u"))
    reply(info, unsubscribe_frame(Subscription(Stream.DEPTH, ("B",)), "u"))
    again = subscribe(subscribe_frame(Subscription(Stream.KLINE, ("C",), (KlineInterval.MIN_1,)), "k2"))
    assert again == '{"code":10007,"trace":"k2","msg":"ok"}'
    assert info.codes == {"A", "C"}
