"""The frame budget and the connection session, driven with literal frames and a hand-held clock."""

from __future__ import annotations

import bisect

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import LocalProtocolError
from bridge.protocol import ConnectionSession, ConnectionState, Disconnect, FrameBudget, plan_connections
from bridge.protocol.codes import KlineInterval
from bridge.records import Cause, Stream
from tests.protocol.frames import RECEIVED as WALL
from tests.protocol.frames import fixture

LOST = Disconnect(Cause.CLOSED)


def max_in_any_window(times: list[float], window: float) -> int:
    """The most frames found in any half-open window [t, t + window)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


def session(codes: int = 2, **kwargs: float) -> ConnectionSession:
    """A session for one crypto connection carrying trade, depth and 1m klines."""
    (plan,) = plan_connections(
        "crypto", [f"C{i}" for i in range(codes)], [Stream.TRADE, Stream.DEPTH, Stream.KLINE], [KlineInterval.MIN_1]
    )
    return ConnectionSession(plan, **kwargs)  # type: ignore[arg-type]


def state_of(subject: ConnectionSession) -> ConnectionState:
    """The session's state, read through a call so the type checker does not pin it."""
    return subject.state


def test_budget_refuses_the_frame_over_the_limit() -> None:
    """Recording a frame past the limit is a local error, never a frame sent."""
    budget = FrameBudget(limit=2, window=10)
    budget.record(0)
    budget.record(1)
    assert budget.next_slot(2) == 10
    with pytest.raises(LocalProtocolError):
        budget.record(2)
    budget.record(10)
    assert budget.used(10) == 2


def test_budget_reserve_keeps_room_for_heartbeats() -> None:
    """With a reserve, subscribes stop early while heartbeats may still go."""
    budget = FrameBudget(limit=4, window=60)
    budget.record(0)
    budget.record(0)
    assert budget.next_slot(1, reserve=2) == 60
    assert budget.next_slot(1) == 1


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=300))
def test_budget_never_allows_more_than_the_limit(gaps: list[float]) -> None:
    """Whatever the request times, sending at next_slot keeps every 60 s window at 60 frames or fewer."""
    budget = FrameBudget()
    now, sent = 0.0, list[float]()
    for gap in gaps:
        now = budget.next_slot(now + gap)
        budget.record(now)
        sent.append(now)
    assert max_in_any_window(sent, 60.0) <= 60


@settings(max_examples=200)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=3, allow_nan=False), st.sampled_from(["tick", "reconnect", "ack"])),
        max_size=200,
    ),
    limit=st.integers(min_value=2, max_value=12),
)
def test_session_never_exceeds_its_budget(steps: list[tuple[float, str]], limit: int) -> None:
    """Any mix of reconnects, acks and ticks: no window of the budget holds more than its limit."""
    subject = session(heartbeat_interval=1.0, ack_timeout=0.5)
    subject.budget = FrameBudget(limit=limit, window=10.0)
    subject.heartbeat_reserve = min(2, limit - 1)
    now, sent = 0.0, list[float]()
    subject.connection_opened(now)
    for gap, action in steps:
        now += gap
        if action == "reconnect":
            subject.connection_lost(LOST, WALL)
            subject.connection_opened(now)
        elif action == "ack":
            subject.receive(fixture("sub_trade_ack.json"), now, WALL)
        sent.extend(now for _ in subject.frames_to_send(now))
    assert max_in_any_window(sent, 10.0) <= limit


def test_session_subscribes_then_streams() -> None:
    """Open: three merged subscribes go at once; after the three acks the connection is streaming."""
    subject = session()
    assert state_of(subject) is ConnectionState.IDLE
    subject.connection_opened(100.0)
    frames = [orjson.loads(f) for f in subject.frames_to_send(100.0)]
    assert [f["code"] for f in frames] == [10000, 10003, 10006]
    assert frames[0]["data"] == {"codes": "C0,C1"}
    assert state_of(subject) is ConnectionState.SUBSCRIBING
    for frame, code in zip(frames, (10001, 10004, 10007), strict=True):
        subject.receive(orjson.dumps({"code": code, "trace": frame["trace"], "msg": "ok"}).decode(), 100.5, WALL)
    assert subject.state is ConnectionState.STREAMING
    assert subject.subscribed


def test_session_heartbeats_every_interval() -> None:
    """Heartbeats go every heartbeat_interval, and next_wakeup says when."""
    subject = session(heartbeat_interval=30.0)
    subject.connection_opened(0.0)
    subject.frames_to_send(0.0)
    for frame in ('{"code":10001,"msg":"ok"}', '{"code":10004,"msg":"ok"}', '{"code":10007,"msg":"ok"}'):
        subject.receive(frame, 1.0, WALL)
    assert subject.next_wakeup(1.0) == 30.0
    assert subject.frames_to_send(29.9) == []
    (beat,) = subject.frames_to_send(30.0)
    assert orjson.loads(beat)["code"] == 10010
    assert subject.next_wakeup(30.0) == 60.0


def test_session_resends_an_unacknowledged_subscribe() -> None:
    """A subscribe without an ack after ack_timeout is sent again, with a new trace."""
    subject = session(ack_timeout=8.0)
    subject.connection_opened(0.0)
    first = [orjson.loads(f) for f in subject.frames_to_send(0.0)]
    subject.receive(orjson.dumps({"code": 10001, "trace": first[0]["trace"]}).decode(), 1.0, WALL)
    subject.receive(orjson.dumps({"code": 10004, "trace": first[1]["trace"]}).decode(), 1.0, WALL)
    assert subject.frames_to_send(7.9) == []
    (again,) = [orjson.loads(f) for f in subject.frames_to_send(8.0)]
    assert again["code"] == 10006
    assert again["trace"] != first[2]["trace"]


def test_terminal_error_fails_the_session() -> None:
    """508 (key expired) moves the connection to FAILED and nothing more is sent."""
    subject = session()
    subject.connection_opened(0.0)
    subject.frames_to_send(0.0)
    subject.receive(fixture("error_508.json"), 1.0, WALL)
    assert subject.state is ConnectionState.FAILED
    assert subject.failure is not None
    assert subject.failure.code == 508
    assert subject.frames_to_send(100.0) == []
    subject.connection_opened(200.0)
    assert subject.state is ConnectionState.FAILED


def test_recoverable_error_asks_for_a_reconnect() -> None:
    """513 (heartbeat timeout) leaves the session recoverable with a reconnect reason."""
    subject = session()
    subject.connection_opened(0.0)
    _, outcomes = subject.receive('{"traceId":"x","code":513,"msg":"heartbeat timeout"}', 1.0, WALL)
    assert outcomes[-1] == Disconnect(
        Cause.VENDOR_ERROR, 513, detail="vendor error 513 (heartbeat_timeout): heartbeat timeout"
    )
    assert subject.state is not ConnectionState.FAILED


def test_refused_handshake_fails_the_session() -> None:
    """A terminal handshake status (401) fails the session before any frame."""
    subject = session()
    refused = subject.handshake_refused(401)
    assert not refused.retry
    assert (refused.cause, refused.code) == (Cause.HTTP_REFUSED, 401)
    assert subject.state is ConnectionState.FAILED
    assert subject.failure == refused


def test_reconnect_resubscribes_everything() -> None:
    """After a lost socket, opening again queues every subscription anew."""
    subject = session()
    subject.connection_opened(0.0)
    subject.frames_to_send(0.0)
    subject.connection_lost(LOST, WALL)
    assert subject.state is ConnectionState.IDLE
    subject.connection_opened(5.0)
    assert [orjson.loads(f)["code"] for f in subject.frames_to_send(5.0)] == [10000, 10003, 10006]


def test_silence_is_measured_from_the_last_push() -> None:
    """silent_for counts from the last push, or from the open when none came."""
    subject = session()
    subject.connection_opened(10.0)
    assert subject.silent_for(25.0) == 15.0
    subject.receive(fixture("push_trade.json"), 30.0, WALL)
    assert subject.silent_for(31.5) == 1.5
