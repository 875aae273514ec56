"""The gateway's limits and fault decisions, pure: times passed in, literal frames, no event loop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.records import Stream
from bridge.simulator.gateway import (
    GARBAGE_KINDS,
    AfterPush,
    Gateway,
    GatewayRules,
    Line,
    RollingCount,
    Verdict,
    garbage_frame,
)
from bridge.simulator.replies import ClientInfo

AT = datetime(2026, 8, 15, 12, 0, tzinfo=UTC)
LIMIT_501 = "Request frequency exceed the limit\uff1a60 times per minute"


def heartbeat(trace: str) -> str:
    """A heartbeat as the bridge sends it."""
    return json.dumps({"code": 10010, "trace": trace})


def subscribe(trace: str, codes: str = "BTCUSDT", code: int = 10000) -> str:
    """A trade (or, with ``code``, depth) subscribe."""
    return json.dumps({"code": code, "trace": trace, "data": {"codes": codes}})


def line_of(gateway: Gateway, connection: int = 1, opened: float = 0.0) -> Line:
    """A fresh crypto connection opened at ``opened``."""
    return gateway.open(ClientInfo(connection, "crypto", AT), opened)


def receive(gateway: Gateway, line: Line, message: str | bytes, now: float = 0.0) -> Verdict:
    """Feed one frame at ``now``."""
    return gateway.receive(line, message, received_at=AT, now=now)


def parsed(verdict: Verdict) -> dict[str, Any]:
    """The verdict's reply as JSON."""
    assert verdict.reply is not None
    reply = json.loads(verdict.reply)
    assert isinstance(reply, dict)
    return reply


def brute_counts(times: list[float], window: float) -> list[int]:
    """For each event, how many events fall in the half-open window ending at it, counted one by one."""
    return [sum(1 for earlier in times[: i + 1] if earlier + window > now) for i, now in enumerate(times)]


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), max_size=200),
    window=st.floats(min_value=0.01, max_value=5, allow_nan=False),
)
def test_rolling_count_agrees_with_a_brute_force_count(gaps: list[float], window: float) -> None:
    """For any non-decreasing frame times, every count and the peak equal a count made one frame at a time."""
    times: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
    counter = RollingCount(window)
    assert [counter.add(time) for time in times] == brute_counts(times, window)
    assert counter.peak == max(brute_counts(times, window), default=0)


def test_rolling_count_is_half_open_and_saturates_at_its_cap() -> None:
    """A frame stops counting exactly one window after it; a capped count reads as the cap."""
    counter = RollingCount(1.0)
    assert [counter.add(t) for t in (0.0, 0.5, 1.0, 1.49, 1.5)] == [1, 2, 2, 3, 3]
    assert counter.count(2.5) == 0
    assert counter.peak == 3
    capped = RollingCount(10.0, cap=3)
    assert [capped.add(0.0) for _ in range(5)] == [1, 2, 3, 3, 3]
    assert capped.peak == 3


def test_sixty_frames_in_a_window_pass_and_the_sixty_first_is_cut_with_501() -> None:
    """The 61st frame in 60 s gets 501 with its own trace and a close; the line then answers nothing."""
    gateway = Gateway(GatewayRules())
    line = line_of(gateway)
    verdicts = [receive(gateway, line, heartbeat(f"h{i}"), now=i * 0.5) for i in range(1, 61)]
    assert all(verdict == Verdict(None) for verdict in verdicts)
    over = receive(gateway, line, heartbeat("h61"), now=30.5)
    assert over.close
    assert over.fault == "budget"
    assert parsed(over) == {"traceId": "h61", "code": 501, "msg": LIMIT_501}
    assert line.cut
    assert receive(gateway, line, subscribe("late"), now=31) == Verdict(None)
    assert not line.info.trades


def test_the_budget_window_rolls() -> None:
    """Frames older than the window stop counting, so a steady 1 frame a second never trips 60 per minute."""
    gateway = Gateway(GatewayRules())
    line = line_of(gateway)
    assert all(receive(gateway, line, heartbeat("h"), now=float(t)).reply is None for t in range(300))
    assert not line.cut


def test_a_frame_limit_of_zero_enforces_nothing_but_the_key_is_still_measured() -> None:
    """With enforcement off nothing is cut, and the key's peak still counts every frame of every connection."""
    gateway = Gateway(GatewayRules(frame_limit=0, frame_window=10.0))
    first, second = line_of(gateway, 1), line_of(gateway, 2)
    for i in range(100):
        assert not receive(gateway, first if i % 2 else second, heartbeat("h"), now=i * 0.01).close
    assert gateway.key_frames.peak == 100


def test_bad_json_counts_against_the_budget_and_is_cut_without_a_trace() -> None:
    """Anything counts, even a frame that is not JSON; a 501 for it has an empty ``traceId``."""
    gateway = Gateway(GatewayRules(frame_limit=2))
    line = line_of(gateway)
    receive(gateway, line, "x")
    receive(gateway, line, b"\x00")
    assert parsed(receive(gateway, line, "y")) == {"traceId": "", "code": 501, "msg": LIMIT_501}


def test_only_the_nth_subscribe_of_the_servers_life_fails_with_501() -> None:
    """Subscribes are numbered over all connections; the Nth alone gets 501 and a cut, the rest are acked."""
    gateway = Gateway(GatewayRules(fail_subscribe_nth=3))
    first, second = line_of(gateway, 1), line_of(gateway, 2)
    assert parsed(receive(gateway, first, subscribe("s1"))) == {"code": 10001, "trace": "s1", "msg": "ok"}
    receive(gateway, first, heartbeat("not a subscribe"))
    assert parsed(receive(gateway, second, subscribe("s2", code=10003)))["code"] == 10004
    failed = receive(gateway, second, subscribe("s3", "ETHUSDT"))
    assert failed.close
    assert failed.fault == "fail_subscribe"
    assert parsed(failed) == {"traceId": "s3", "code": 501, "msg": LIMIT_501}
    assert "ETHUSDT" not in second.info.trades
    assert parsed(receive(gateway, first, subscribe("s4")))["code"] == 10001
    assert gateway.subscribes == 4


def test_the_nth_subscribe_gets_the_prefixed_505_and_adds_nothing() -> None:
    """The 505 fault answers in text with the vendor's prefix, keeps the connection and changes nothing."""
    gateway = Gateway(GatewayRules(subscribe_fail_505_nth=2))
    line = line_of(gateway)
    receive(gateway, line, subscribe("s1", "A"))
    refused = receive(gateway, line, subscribe("s2", "B"))
    assert refused.reply == (
        'Subscribe fail: {"traceId":"s2","code":505,"msg":"Single WS subscribe exceeds the limit 600"}'
    )
    assert not refused.close
    assert refused.fault == "subscribe_505"
    assert list(line.info.trades) == ["A"]
    assert parsed(receive(gateway, line, subscribe("s3", "B")))["code"] == 10001


def test_the_code_cap_of_the_rules_reaches_the_reply_logic() -> None:
    """A subscribe past ``max_codes_per_connection`` is refused with 505 naming the cap."""
    gateway = Gateway(GatewayRules(max_codes_per_connection=2))
    line = line_of(gateway)
    assert receive(gateway, line, subscribe("s", "A,B,C")).reply == (
        'Subscribe fail: {"traceId":"s","code":505,"msg":"Single WS subscribe exceeds the limit 2"}'
    )


def test_heartbeats_are_due_from_the_handshake_then_from_the_last_one() -> None:
    """513 comes once a full timeout passes with no 10010, counted from the open and then from each heartbeat."""
    gateway = Gateway(GatewayRules(heartbeat_timeout=30.0))
    line = line_of(gateway, opened=100.0)
    assert gateway.overdue(line, 124.5) is None
    receive(gateway, line, heartbeat("h"), now=125.0)
    receive(gateway, line, subscribe("s"), now=150.0)  # anything else does not count as a heartbeat
    assert gateway.overdue(line, 154.5) is None
    assert gateway.overdue(line, 155.0) == '{"traceId":"","code":513,"msg":"Websocket heartbeat timeout"}'
    assert line.cut
    assert gateway.overdue(line, 500.0) is None


def test_no_heartbeat_timeout_means_never_overdue() -> None:
    """Without ``heartbeat_timeout`` a silent connection is never cut."""
    gateway = Gateway(GatewayRules())
    assert gateway.overdue(line_of(gateway), 1e9) is None


def test_garbage_follows_every_nth_push_cycling_through_the_kinds() -> None:
    """Every Nth push of a line is followed by one bad frame, the kinds in order, each line from the first."""
    gateway = Gateway(GatewayRules(garbage_every=2))
    line = line_of(gateway)
    receive(gateway, line, subscribe("s", "BTC"))
    kinds = [gateway.pushed(line, Stream.TRADE, "BTC").garbage for _ in range(12)]
    assert kinds[0::2] == [None] * 6
    assert kinds[1::2] == [*GARBAGE_KINDS, GARBAGE_KINDS[0]]
    other = line_of(gateway, 2)
    assert [gateway.pushed(other, Stream.TRADE, "X").garbage for _ in range(2)] == [None, "not_json"]


def test_a_bad_price_names_a_traded_code_of_the_connection() -> None:
    """After a depth or kline push the bad trade names a trade-subscribed code when there is one."""
    gateway = Gateway(GatewayRules(garbage_every=1))
    line = line_of(gateway)
    receive(gateway, line, subscribe("d", "DEPTHONLY", code=10003))
    assert gateway.pushed(line, Stream.DEPTH, "DEPTHONLY").symbol == "DEPTHONLY"
    receive(gateway, line, subscribe("t", "TRADED"))
    assert gateway.pushed(line, Stream.DEPTH, "DEPTHONLY").symbol == "TRADED"
    assert gateway.pushed(line, Stream.TRADE, "TRADED").symbol == "TRADED"


def test_the_connection_is_aborted_after_exactly_n_pushes_each() -> None:
    """``close_after_pushes`` aborts on the Nth push of each line, garbage first when both fall together."""
    gateway = Gateway(GatewayRules(close_after_pushes=3, garbage_every=3))
    for connection in (1, 2):
        line = line_of(gateway, connection)
        after = [gateway.pushed(line, Stream.TRADE, "A") for _ in range(3)]
        assert after[:2] == [AfterPush(), AfterPush()]
        assert after[2] == AfterPush("not_json", "A", abort=True)
        assert line.cut


def test_garbage_frames_are_bad_in_exactly_their_own_way() -> None:
    """Each kind of bad frame has the shape its name promises, and only that flaw."""
    not_json = garbage_frame("not_json", "BTCUSDT", 1)
    assert isinstance(not_json, str)
    assert not not_json.startswith("{")
    assert any(bracket in not_json for bracket in "{[")
    with pytest.raises(json.JSONDecodeError):
        json.loads(not_json)
    truncated = garbage_frame("invalid_json", "BTCUSDT", 1)
    assert truncated == '{"code":10002,"data":{"s":"BTCUSDT","t":'
    binary = garbage_frame("binary", "BTCUSDT", 1)
    assert isinstance(binary, bytes)
    assert 0 < len(binary) < 16
    assert garbage_frame("unknown_code", "BTCUSDT", 1) == '{"code":10099,"data":{}}'
    bad_price = garbage_frame("bad_price", "BTCUSDT", 1_786_000_000_000)
    assert isinstance(bad_price, str)
    assert json.loads(bad_price) == {
        "code": 10002,
        "data": {"p": "abc", "s": "BTCUSDT", "t": 1_786_000_000_000, "td": 0, "v": "1", "vw": "1"},
    }
