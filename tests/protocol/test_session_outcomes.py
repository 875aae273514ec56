"""What the session decides, on literal frames with a hand-held clock: records, dead letters, gaps, disconnects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from bridge.protocol import (
    ConnectionSession,
    ConnectionState,
    Disconnect,
    FrameKind,
    GapClosed,
    Outcome,
    Record,
    Rejected,
    StaleFeed,
    StalePolicy,
    Subscribed,
    VendorError,
    plan_connections,
    run_id,
)
from bridge.records import Cause, DeadLetterStage, Stream, TradeRecord
from tests.protocol.frames import fixture

T0 = datetime(2026, 8, 15, 12, 0, 0, tzinfo=UTC)
TRADE = fixture("push_trade.json")


def trade_session(**kwargs: object) -> ConnectionSession:
    """A session for one crypto connection carrying trades of BTCUSDT, run id ``run1``."""
    (plan,) = plan_connections("crypto", ["BTCUSDT"], [Stream.TRADE])
    return ConnectionSession(plan, run_id="run1", **kwargs)  # type: ignore[arg-type]


def at(seconds: float) -> datetime:
    """The wall-clock instant ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def streaming(subject: ConnectionSession, now: float) -> tuple[Outcome, ...]:
    """Open the connection at ``now`` and acknowledge its trade subscription; the ack's outcomes."""
    subject.begin_attempt()
    subject.connection_opened(now)
    (frame,) = subject.frames_to_send(now)
    trace = orjson.loads(frame)["trace"]
    _, outcomes = subject.receive(orjson.dumps({"code": 10001, "trace": trace}).decode(), now, at(now))
    return outcomes


def test_a_push_becomes_a_record_with_provenance() -> None:
    """A trade push gives one Record whose provenance names the connection instance and counts from 1."""
    subject = trade_session()
    streaming(subject, 0.0)
    kind, (first,) = subject.receive(TRADE, 1.0, at(1))
    _, (second,) = subject.receive(TRADE, 2.0, at(2))
    assert kind is FrameKind.PUSH_TRADE
    assert isinstance(first, Record)
    assert isinstance(second, Record)
    record = first.record
    assert isinstance(record, TradeRecord)
    assert record.price == Decimal("63039")
    assert first.raw == TRADE
    assert (record.provenance.connection_id, record.provenance.sequence) == ("crypto-0#1@run1", 1)
    assert record.provenance.received_time == at(1)
    assert second.record.provenance.sequence == 2


def test_the_sequence_restarts_with_a_new_connection_id() -> None:
    """After a reconnect the connection id names the new attempt and the sequence starts again at 1."""
    subject = trade_session()
    streaming(subject, 0.0)
    subject.receive(TRADE, 1.0, at(1))
    subject.connection_lost(Disconnect(Cause.CLOSED), at(2))
    streaming(subject, 3.0)
    _, outcomes = subject.receive(TRADE, 4.0, at(4))
    (record,) = [outcome for outcome in outcomes if isinstance(outcome, Record)]
    assert (record.record.provenance.connection_id, record.record.provenance.sequence) == ("crypto-0#2@run1", 1)


def test_connection_ids_of_two_runs_differ() -> None:
    """Two process runs (different run ids) never give the same connection id for the same plan and attempt."""
    started = datetime(2026, 12, 2, 1, 53, 46, tzinfo=UTC)
    first, second = run_id(started, 0x3F9A1C), run_id(started, 0x3F9A1D)
    assert first == "20261202T015346Z-3f9a1c"
    (plan,) = plan_connections("crypto", ["BTCUSDT"], [Stream.TRADE])
    ids = {ConnectionSession(plan, run_id=run).begin_attempt() for run in (first, second)}
    assert ids == {"crypto-0#1@20261202T015346Z-3f9a1c", "crypto-0#1@20261202T015346Z-3f9a1d"}


def test_garbage_becomes_a_dead_letter_and_the_stream_goes_on() -> None:
    """A frame that is not JSON is a Rejected outcome of stage classify; the next push is a record."""
    subject = trade_session()
    streaming(subject, 0.0)
    kind, (rejected,) = subject.receive("#!garbage {[ not json ]", 1.0, at(1))
    assert kind is FrameKind.GARBAGE
    assert isinstance(rejected, Rejected)
    letter = rejected.letter
    assert (letter.reason, letter.stage, letter.raw) == (
        "not_json",
        DeadLetterStage.CLASSIFY,
        "#!garbage {[ not json ]",
    )
    assert (letter.business, letter.connection_id, letter.received_time) == ("crypto", "crypto-0#1@run1", at(1))
    assert isinstance(subject.receive(TRADE, 2.0, at(2)).outcomes[0], Record)


def test_a_bad_price_is_a_normalize_dead_letter() -> None:
    """A push whose price is no decimal is Rejected at stage normalize, with the frame as its raw text."""
    subject = trade_session()
    streaming(subject, 0.0)
    bad = '{"code":10002,"data":{"p":"abc","s":"BTCUSDT","t":1786775227483,"td":0,"v":"1"}}'
    kind, (rejected,) = subject.receive(bad, 1.0, at(1))
    assert kind is FrameKind.PUSH_TRADE
    assert isinstance(rejected, Rejected)
    assert (rejected.letter.reason, rejected.letter.stage, rejected.letter.raw) == (
        "not_a_decimal", DeadLetterStage.NORMALIZE, bad,
    )  # fmt: skip


def test_a_push_of_a_stream_not_subscribed_is_refused() -> None:
    """A depth push on a trade-only connection is a dead letter, not a record for a topic nobody created."""
    subject = trade_session()
    streaming(subject, 0.0)
    _, (rejected,) = subject.receive(fixture("push_depth.json"), 1.0, at(1))
    assert isinstance(rejected, Rejected)
    assert rejected.letter.reason == "unsubscribed_stream"


def test_all_acks_make_the_connection_subscribed() -> None:
    """The ack of the last outstanding subscription gives Subscribed (the first time: no gap to close)."""
    subject = trade_session()
    outcomes = streaming(subject, 0.0)
    assert Subscribed() in outcomes
    assert not any(isinstance(outcome, GapClosed) for outcome in outcomes)
    assert subject.state is ConnectionState.STREAMING


def test_a_reconnect_closes_its_gap_when_subscribed_again() -> None:
    """Data stops at the loss; the gap closes when every subscription is acknowledged on the next connection."""
    subject = trade_session()
    streaming(subject, 0.0)
    subject.receive(TRADE, 1.0, at(1))
    subject.connection_lost(Disconnect(Cause.VENDOR_ERROR, 513), at(5))
    (closed,) = [outcome for outcome in streaming(subject, 7.0) if isinstance(outcome, GapClosed)]
    gap = closed.gap
    assert (gap.start, gap.end, gap.cause, gap.code, gap.resolved) == (at(5), at(7), Cause.VENDOR_ERROR, 513, True)
    assert (gap.previous_connection_id, gap.next_connection_id) == ("crypto-0#1@run1", "crypto-0#2@run1")
    assert (gap.business, gap.connection, gap.codes, gap.streams) == (
        "crypto",
        "crypto-0",
        ("BTCUSDT",),
        (Stream.TRADE,),
    )


def test_a_stopped_bridge_has_no_gap_but_reports_an_open_one() -> None:
    """Stopping opens no gap; a gap open at the stop is reported unresolved by finish()."""
    subject = trade_session()
    streaming(subject, 0.0)
    subject.receive(TRADE, 1.0, at(1))
    subject.connection_lost(Disconnect(Cause.STOPPED), at(2))
    assert subject.finish(at(3)) is None
    streaming(subject, 4.0)
    subject.connection_lost(Disconnect(Cause.SOCKET_ERROR), at(5))
    closed = subject.finish(at(9))
    assert closed is not None
    assert (closed.gap.start, closed.gap.end, closed.gap.resolved, closed.gap.next_connection_id) == (
        at(5), at(9), False, None,
    )  # fmt: skip


def test_a_terminal_error_frame_disconnects_for_good() -> None:
    """508 (key expired) gives the error event and a Disconnect that must not be retried."""
    subject = trade_session()
    streaming(subject, 0.0)
    kind, (error, ended) = subject.receive(fixture("error_508.json"), 1.0, at(1))
    assert kind is FrameKind.ERROR
    assert isinstance(error, VendorError)
    assert ended == subject.failure
    assert isinstance(ended, Disconnect)
    assert (ended.cause, ended.code, ended.retry) == (Cause.VENDOR_ERROR, 508, False)


def test_a_refused_request_is_reported_without_a_disconnect() -> None:
    """505 (too many codes) is logged by the shell; the socket stays, since a reconnect would be refused again."""
    subject = trade_session()
    streaming(subject, 0.0)
    _, outcomes = subject.receive(fixture("error_505_prefixed.txt"), 1.0, at(1))
    assert [type(outcome) for outcome in outcomes] == [VendorError]


def test_refused_handshakes_retry_by_status() -> None:
    """A 429 or 503 handshake is retried; a 401 is not, and fails the session."""
    subject = trade_session()
    for status in (429, 503):
        subject.begin_attempt()
        refused = subject.handshake_refused(status)
        assert (refused.cause, refused.code, refused.retry) == (Cause.HTTP_REFUSED, status, True)
    assert subject.failure is None
    subject.begin_attempt()
    refused = subject.handshake_refused(401)
    assert not refused.retry
    assert "unauthorized" in refused.detail
    assert subject.state is ConnectionState.FAILED


def test_stale_feed_reconnects_by_default_and_the_gap_starts_at_the_last_push() -> None:
    """Silence past stale_after gives StaleFeed and a stale Disconnect; the gap runs from the last push."""
    subject = trade_session(stale_after=10.0)
    streaming(subject, 0.0)
    subject.receive(TRADE, 2.0, at(2))
    assert subject.check_stale(11.9) == ()
    stale, ended = subject.check_stale(12.0)
    assert stale == StaleFeed(10.0, reconnect=True)
    assert isinstance(ended, Disconnect)
    assert ended.cause is Cause.STALE
    assert subject.check_stale(30.0) == (), "once per silent spell"
    subject.connection_lost(ended, at(12))
    subject.begin_attempt()
    subject.connection_opened(13.0)
    _, outcomes = subject.receive(TRADE, 14.0, at(14))
    (closed,) = [outcome for outcome in outcomes if isinstance(outcome, GapClosed)]
    assert (closed.gap.start, closed.gap.end, closed.gap.cause) == (at(2), at(14), Cause.STALE)


def test_stale_feed_with_report_policy_only_reports() -> None:
    """With on_stale report, silence is a StaleFeed outcome alone: no disconnect, no gap."""
    subject = trade_session(stale_after=10.0, on_stale=StalePolicy.REPORT)
    streaming(subject, 0.0)
    assert subject.check_stale(10.0) == (StaleFeed(10.0, reconnect=False),)
    assert not subject.gaps.open
