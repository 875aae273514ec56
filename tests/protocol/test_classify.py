"""Classification of every frame the vendor sends, from the fixtures and from garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol import (
    Garbage,
    HeartbeatAck,
    Notice,
    Push,
    Recovery,
    SubscribeAck,
    SubscribeRejected,
    UnknownFrame,
    UnsubscribeAck,
    VendorError,
    Welcome,
    classify_frame,
)
from bridge.protocol.events import ServerEvent
from bridge.records import Stream
from tests.protocol.frames import fixture, fixture_names


def test_welcome_frame() -> None:
    """The 200 frame every connection starts with is a Welcome, not an error."""
    assert classify_frame(fixture("welcome.json")) == Welcome("ws connect success")


def test_stock_plain_text_greeting_is_a_notice() -> None:
    """The stock channel's plain-text greeting is information, not garbage and not an error."""
    assert classify_frame(fixture("plaintext_greeting.txt")) == Notice(
        "You have permission to subscribe to all market data"
    )


@pytest.mark.parametrize(
    ("name", "stream", "trace"),
    [
        ("sub_trade_ack.json", Stream.TRADE, "01213e9d90a0"),
        ("sub_depth_ack.json", Stream.DEPTH, "1fd2ef5da87143bcb74dc4435bb9ebfd"),
        ("sub_kline_ack.json", Stream.KLINE, "93ab75d68ff3420fa2a5dac9fdc0af70"),
    ],
)
def test_subscribe_acks(name: str, stream: Stream, trace: str) -> None:
    """10001/10004/10007 are acks of the matching stream carrying the echoed trace (not pushes)."""
    assert classify_frame(fixture(name)) == SubscribeAck(stream, trace)


@pytest.mark.parametrize(
    ("name", "stream", "symbol"),
    [
        ("push_trade.json", Stream.TRADE, "BTCUSDT"),
        ("push_depth.json", Stream.DEPTH, "BTCUSDT"),
        ("push_kline.json", Stream.KLINE, "BTCUSDT"),
    ],
)
def test_pushes(name: str, stream: Stream, symbol: str) -> None:
    """10002/10005/10008 are pushes whose payload is the frame's data object, raw text kept."""
    text = fixture(name)
    event = classify_frame(text)
    assert isinstance(event, Push)
    assert event.stream is stream
    assert event.payload["s"] == symbol
    assert event.raw == text


def test_heartbeat_ack() -> None:
    """10011 answers a heartbeat that asked for an answer."""
    assert classify_frame(fixture("heartbeat_ack.json")) == HeartbeatAck("abc")


def test_unsubscribe_ack() -> None:
    """11010 acknowledges an unsubscribe."""
    assert classify_frame('{"code":11010,"trace":"u1","msg":"ok"}') == UnsubscribeAck("u1")


def test_error_507_carries_trace_id() -> None:
    """Error frames carry traceId (not trace); 507 is our bug to report, not a reason to reconnect."""
    event = classify_frame(fixture("error_507.json"))
    assert isinstance(event, VendorError)
    assert (event.code, event.name, event.trace) == (507, "param_lost", "408e395555214a2e91b596e351b83c97")
    assert event.recovery is Recovery.REPORT
    assert event.message == "Param lost：data"  # noqa: RUF001  (the vendor writes a full-width colon)


def test_error_501_is_recoverable() -> None:
    """501 (over 60 frames a minute) reconnects with backoff."""
    event = classify_frame(fixture("error_501.json"))
    assert isinstance(event, VendorError)
    assert (event.code, event.trace, event.recovery) == (501, "t2", Recovery.RECONNECT)
    assert not event.terminal


def test_error_508_is_terminal() -> None:
    """508 (key expired) is terminal: no reconnect can fix it."""
    event = classify_frame(fixture("error_508.json"))
    assert isinstance(event, VendorError)
    assert (event.code, event.name, event.terminal) == (508, "key_expired", True)


def test_prefixed_error_505() -> None:
    """An error JSON behind 'Subscribe fail:' is classified like the bare error frame."""
    event = classify_frame(fixture("error_505_prefixed.txt"))
    assert isinstance(event, VendorError)
    assert (event.code, event.trace, event.recovery) == (505, "t1", Recovery.REPORT)
    assert event.message == "Single WS subscribe exceeds the limit 600"


def test_subscribe_fail_prose_is_a_rejection() -> None:
    """'Subscribe fail: <text>' without JSON is the vendor's answer, not garbage."""
    assert classify_frame("Subscribe fail: market not purchased") == SubscribeRejected("market not purchased")


def test_bare_param_not_json_is_515() -> None:
    """The stock channel's bare 'Param not json' text stands for error 515."""
    event = classify_frame("Param not json: {code:10000")
    assert isinstance(event, VendorError)
    assert event.code == 515
    assert event.recovery is Recovery.RECONNECT


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"code":10002,"data":', "invalid_json"),
        ("[1,2,3]", "not_json"),
        ('{"msg":"no code"}', "missing_code"),
        ('{"code":"10002","data":{}}', "missing_code"),
        ('{"code":true}', "missing_code"),
        ('{"code":10002,"data":"x"}', "push_without_data"),
        ('{"code":10005}', "push_without_data"),
        ("\x00\x01\x02", "not_json"),
        ('{"code":10002}{', "invalid_json"),
    ],
)
def test_garbage_with_reasons(frame: str, reason: str) -> None:
    """Frames that cannot be understood become Garbage with a stable reason, never an exception."""
    event = classify_frame(frame)
    assert event == Garbage(reason, frame) or (isinstance(event, Garbage) and event.reason == reason)


def test_binary_frame_is_garbage() -> None:
    """A binary frame is not part of the protocol: Garbage, with its bytes escaped for the dead letter."""
    event = classify_frame(b'{"code":10002}\xff')
    assert isinstance(event, Garbage)
    assert event.reason == "binary_frame"
    assert "\\xff" in event.raw


def test_oversized_frame() -> None:
    """A frame above the configured limit is refused by size before any parsing."""
    frame = '{"code":10002,"data":{"s":"' + "A" * 2000 + '"}}'
    event = classify_frame(frame, max_frame_bytes=1024)
    assert isinstance(event, Garbage)
    assert event.reason == "oversized"
    assert isinstance(classify_frame(frame, max_frame_bytes=4096), Push)


def test_oversized_counts_utf8_bytes() -> None:
    """The limit is in UTF-8 bytes: 400 three-byte characters exceed 1024 bytes though only 400 chars."""
    frame = '{"code":200,"msg":"' + "価" * 400 + '"}'
    event = classify_frame(frame, max_frame_bytes=1024)
    assert isinstance(event, Garbage)
    assert event.reason == "oversized"


def test_unknown_code() -> None:
    """A well-formed frame with a code the protocol page does not list is UnknownFrame."""
    assert classify_frame('{"code":10022,"data":{}}') == UnknownFrame(10022, '{"code":10022,"data":{}}')


def test_unknown_error_code_reconnects() -> None:
    """An error code outside the catalogue is treated as a recoverable server error."""
    event = classify_frame('{"code":530,"traceId":"x","msg":"new"}')
    assert isinstance(event, VendorError)
    assert (event.name, event.recovery) == ("unknown", Recovery.RECONNECT)


@pytest.mark.parametrize("name", fixture_names())
def test_every_fixture_is_understood(name: str) -> None:
    """No fixture frame is classified as garbage or unknown."""
    assert not isinstance(classify_frame(fixture(name)), Garbage | UnknownFrame)


@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    """Any text at all gives an event, never an exception."""
    assert isinstance(classify_frame(text), ServerEvent)


@given(st.binary())
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any binary frame gives Garbage, never an exception."""
    assert isinstance(classify_frame(data), Garbage)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises(value: object) -> None:
    """Any JSON document, including ones with a push code and odd data, gives an event."""
    import json

    for code in (10002, 10005, 10008, 507, 10001):
        frame = json.dumps({"code": code, "data": value, "trace": value, "traceId": value, "msg": value})
        assert isinstance(classify_frame(frame), ServerEvent)
    assert isinstance(classify_frame(json.dumps(value)), ServerEvent)
