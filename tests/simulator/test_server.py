"""The simulator over real sockets on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.redact import redact
from bridge.simulator import Simulator
from tests.simulator.support import (
    API_KEY,
    DECIMAL_TEXT,
    collect,
    eventually,
    frames_for,
    http_request,
    recv_code,
    recv_json,
    recv_text,
    send_request,
    session,
    sim_options,
    url_for,
)

SUBSCRIBE_TRADE, SUBSCRIBE_DEPTH, SUBSCRIBE_KLINE = 10000, 10003, 10006
UNSUBSCRIBE_TRADE, UNSUBSCRIBE_KLINE = 11000, 11002
PUSH_TRADE, PUSH_DEPTH, PUSH_KLINE = 10002, 10005, 10008
UNSUBSCRIBE_ACK = 11010


async def test_wrong_key_is_refused_in_the_handshake_with_401() -> None:
    """A wrong key never gets a WebSocket: the handshake answers 401 with the vendor's JSON body."""
    async with Simulator(sim_options()) as sim:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url_for(sim, key="wrong-key")):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b'{"message":"Invalid API key in request"}'
        assert refused.value.response.headers["Content-Type"] == "application/json"
        assert sim.stats.handshakes_refused == 1
        assert sim.stats.connections_total == 0


async def test_missing_key_is_refused_with_401_and_unknown_path_with_404() -> None:
    """No ``apikey`` is a 401 like a wrong one; a path other than ``/ws`` is a 404."""
    async with Simulator(sim_options()) as sim:
        with pytest.raises(InvalidStatus) as missing:
            async with connect(url_for(sim, key=None)):
                pass
        assert missing.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as elsewhere:
            async with connect(f"ws://127.0.0.1:{sim.port}/other?business=crypto&apikey={API_KEY}"):
                pass
        assert elsewhere.value.response.status_code == 404


async def test_keys_never_reach_the_logs_even_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Request paths, ours and the websockets library's, are logged with ``apikey=***``."""
    caplog.set_level(logging.DEBUG, logger="bridge.simulator")
    caplog.set_level(logging.DEBUG, logger="bridge.simulator.websockets")
    async with Simulator(sim_options()) as sim:
        with pytest.raises(InvalidStatus):
            async with connect(url_for(sim, key="sekrit-123")):
                pass
        async with session(sim):
            pass
    assert "handshake refused with 401: /ws?business=crypto&apikey=***" in caplog.text
    assert "/ws?business=crypto&apikey=*** HTTP/1.1" in caplog.text
    assert "sekrit-123" not in caplog.text
    assert API_KEY not in caplog.text


def test_redaction_covers_every_spelling_of_the_key_parameter() -> None:
    """Any ``apikey=`` value in any text is replaced, whatever its position or case."""
    assert redact("/ws?apikey=a1&business=stock") == "/ws?apikey=***&business=stock"
    assert redact("GET /ws?business=stock&APIKEY=zz HTTP/1.1") == "GET /ws?business=stock&APIKEY=*** HTTP/1.1"
    assert redact("/ws?business=stock") == "/ws?business=stock"


async def test_welcome_is_the_first_frame() -> None:
    """Every connection starts with ``{"code":200,"msg":"ws connect success"}``, byte for byte."""
    async with Simulator(sim_options()) as sim, connect(url_for(sim)) as ws:
        assert await recv_text(ws) == '{"code":200,"msg":"ws connect success"}'


async def test_stock_greets_in_plain_text_before_the_welcome() -> None:
    """On ``business=stock`` the first frame is the plain-text permission greeting, then the welcome."""
    async with Simulator(sim_options()) as sim, connect(url_for(sim, "stock")) as ws:
        assert await recv_text(ws) == "You have permission to subscribe to all market data"
        assert await recv_json(ws) == {"code": 200, "msg": "ws connect success"}


async def test_subscribe_acks_echo_the_trace() -> None:
    """Trade, depth and kline subscribes are acked 10001/10004/10007 with the request's trace."""
    async with Simulator(sim_options()) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "trace-t", {"codes": "BTCUSDT"})
        assert await recv_code(ws, 10001) == {"code": 10001, "trace": "trace-t", "msg": "ok"}
        await send_request(ws, SUBSCRIBE_DEPTH, "trace-d", {"codes": "BTCUSDT"})
        assert await recv_code(ws, 10004) == {"code": 10004, "trace": "trace-d", "msg": "ok"}
        await send_request(ws, SUBSCRIBE_KLINE, "trace-k", {"arr": [{"type": 1, "codes": "BTCUSDT"}]})
        assert await recv_code(ws, 10007) == {"code": 10007, "trace": "trace-k", "msg": "ok"}


async def test_trades_come_for_subscribed_codes_only_with_exact_amounts() -> None:
    """Trades carry only subscribed codes, decimal strings, epoch-ms ``t`` near now, and ``vw == p * v``."""
    # 500 trades a second per code: below 1000/s a code's strictly increasing t keeps up with the clock.
    async with Simulator(sim_options(rate=1500)) as sim, session(sim) as ws, session(sim) as other:
        await send_request(other, SUBSCRIBE_TRADE, "o", {"codes": "DOGEUSDT"})
        await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "BTCUSDT,ETHUSDT"})
        before_ms = time.time_ns() // 1_000_000
        trades = await collect(ws, PUSH_TRADE, 200)
        after_ms = time.time_ns() // 1_000_000
    assert {trade["s"] for trade in trades} == {"BTCUSDT", "ETHUSDT"}
    for trade in trades:
        assert all(DECIMAL_TEXT.fullmatch(trade[key]) for key in ("p", "v", "vw"))
        assert Decimal(trade["vw"]) == Decimal(trade["p"]) * Decimal(trade["v"])
        assert type(trade["t"]) is int
        # The pushes of one pacer tick (10 ms) leave together, their repeated times bumped 1 ms apart.
        assert before_ms - 1000 <= trade["t"] <= after_ms + 10
        assert trade["td"] in {0, 1, 2}


async def test_depth_has_best_bid_below_best_ask() -> None:
    """Depth pushes have five asks rising and five bids falling, best bid below best ask."""
    async with Simulator(sim_options(rate=0, depth_rate=2000)) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_DEPTH, "d", {"codes": "BTCUSDT,AAPL.US"})
        books = await collect(ws, PUSH_DEPTH, 50)
    for book in books:
        asks, bids = [Decimal(p) for p in book["a"][0]], [Decimal(p) for p in book["b"][0]]
        assert len(asks) == len(bids) == len(book["a"][1]) == len(book["b"][1]) == 5
        assert asks == sorted(asks)
        assert bids == sorted(bids, reverse=True)
        assert bids[0] < asks[0]


async def test_kline_t_is_an_aligned_bar_start_in_seconds() -> None:
    """Kline ``t`` is a string of epoch seconds aligned to the interval, and the bar contains now."""
    async with Simulator(sim_options(rate=0, depth_rate=0, kline_rate=2000)) as sim, session(sim) as ws:
        arr = [{"type": 1, "codes": "BTCUSDT"}, {"type": 2, "codes": "BTCUSDT"}]
        await send_request(ws, SUBSCRIBE_KLINE, "k", {"arr": arr})
        bars = await collect(ws, PUSH_KLINE, 40)
        now = int(time.time())
    assert {bar["ty"] for bar in bars} == {1, 2}
    for bar in bars:
        assert isinstance(bar["t"], str)
        start, length = int(bar["t"]), {1: 60, 2: 300}[bar["ty"]]
        assert start % length == 0
        assert start <= now < start + length + 2
        assert Decimal(bar["l"]) <= min(Decimal(bar["o"]), Decimal(bar["c"]))
        assert max(Decimal(bar["o"]), Decimal(bar["c"])) <= Decimal(bar["h"])


async def test_heartbeat_is_answered_only_when_it_asks_for_an_ack() -> None:
    """A plain heartbeat gets nothing; one with ``data.ack == 1`` gets 10011 with its trace."""
    async with Simulator(sim_options()) as sim, session(sim) as ws:
        await send_request(ws, 10010, "quiet")
        await send_request(ws, 10010, "loud", {"ack": 1})
        assert await recv_json(ws) == {"code": 10011, "trace": "loud", "msg": "ok"}
        assert sim.stats.frames_received == 2


async def test_bad_frames_get_515_and_507() -> None:
    """A non-JSON frame gets a 515 error frame and a subscribe without data a 507 with ``traceId``."""
    async with Simulator(sim_options()) as sim, session(sim) as ws:
        await ws.send("hello")
        assert (await recv_json(ws))["code"] == 515
        await send_request(ws, SUBSCRIBE_TRADE, "408e3955")
        assert await recv_json(ws) == {"traceId": "408e3955", "code": 507, "msg": "Param lost\uff1adata"}


async def test_unsubscribe_stops_the_data() -> None:
    """After the 11010 ack, no further push of the unsubscribed code arrives; other codes go on."""
    async with Simulator(sim_options(rate=4000)) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "s", {"codes": "BTCUSDT,ETHUSDT"})
        assert {trade["s"] for trade in await collect(ws, PUSH_TRADE, 20)} == {"BTCUSDT", "ETHUSDT"}
        await send_request(ws, UNSUBSCRIBE_TRADE, "u", {"codes": "BTCUSDT"})
        assert (await recv_code(ws, UNSUBSCRIBE_ACK))["trace"] == "u"
        after = await frames_for(ws, 0.3)
    symbols = {frame["data"]["s"] for frame in after if frame["code"] == PUSH_TRADE}
    assert symbols == {"ETHUSDT"}


async def test_kline_unsubscribe_by_interval_keeps_the_other_interval() -> None:
    """``klineTypes`` drops only its intervals: after the ack only the other interval's bars arrive."""
    async with Simulator(sim_options(rate=0, depth_rate=0, kline_rate=2000)) as sim, session(sim) as ws:
        arr = [{"type": 1, "codes": "BTCUSDT"}, {"type": 5, "codes": "BTCUSDT"}]
        await send_request(ws, SUBSCRIBE_KLINE, "s", {"arr": arr})
        await collect(ws, PUSH_KLINE, 4)
        await send_request(ws, UNSUBSCRIBE_KLINE, "u", {"codes": "BTCUSDT", "klineTypes": "1"})
        await recv_code(ws, UNSUBSCRIBE_ACK)
        after = await frames_for(ws, 0.2)
    assert {frame["data"]["ty"] for frame in after if frame["code"] == PUSH_KLINE} == {5}


async def test_unknown_business_is_acked_and_stays_silent() -> None:
    """Like the vendor, a business without data acks the subscribe and then sends nothing."""
    async with Simulator(sim_options(rate=4000)) as sim, session(sim, "forex") as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "EURUSD"})
        assert await recv_json(ws) == {"code": 10001, "trace": "t", "msg": "ok"}
        assert await frames_for(ws, 0.2) == []
        assert sim.stats.trades_sent == 0


async def test_rate_is_a_total_spread_evenly_over_the_subscribed_codes() -> None:
    """Round-robin: over any run of pushes, subscribed codes get counts within one of each other."""
    async with Simulator(sim_options(rate=4000, depth_rate=0, kline_rate=0)) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "A1,B2,C3,D4"})
        started = time.monotonic()
        trades = await collect(ws, PUSH_TRADE, 400)
        elapsed = time.monotonic() - started
    counts = Counter(trade["s"] for trade in trades)
    assert set(counts) == {"A1", "B2", "C3", "D4"}
    assert max(counts.values()) - min(counts.values()) <= 1
    # 400 pushes at 4000/s take about 0.1 s; a loose bound keeps a loaded machine green.
    assert 0.05 < elapsed < 1.5


async def test_max_pushes_stops_trades_at_exactly_n() -> None:
    """With ``max_pushes=N`` exactly N trades are sent in total, over all connections."""
    options = sim_options(rate=5000, depth_rate=0, kline_rate=0, max_pushes=75)
    async with Simulator(options) as sim, session(sim) as first, session(sim) as second:
        await send_request(first, SUBSCRIBE_TRADE, "a", {"codes": "BTCUSDT,ETHUSDT"})
        await send_request(second, SUBSCRIBE_TRADE, "b", {"codes": "XAUUSD"})
        await recv_code(first, 10001)
        await recv_code(second, 10001)
        received = await asyncio.gather(frames_for(first, 0.4), frames_for(second, 0.4))
        pushes = [frame for frames in received for frame in frames if frame["code"] == PUSH_TRADE]
        assert len(pushes) == 75
        assert sim.stats.trades_sent == 75


async def test_record_file_holds_exactly_the_frames_sent(tmp_path: Path) -> None:
    """Each push sent is one JSON line with the business and the exact frame text, in sending order."""
    record = tmp_path / "sent.jsonl"
    options = sim_options(
        rate=3000,
        depth_rate=1000,
        kline_rate=500,
        max_pushes=60,
        max_depth_pushes=20,
        max_kline_pushes=10,
        record_sent=record,
    )
    received: list[str] = []
    async with Simulator(options) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "BTCUSDT,ETHUSDT"})
        await send_request(ws, SUBSCRIBE_DEPTH, "d", {"codes": "BTCUSDT"})
        await send_request(ws, SUBSCRIBE_KLINE, "k", {"arr": [{"type": 1, "codes": "BTCUSDT"}]})
        async with asyncio.timeout(3):
            while len(received) < 90:
                text = await recv_text(ws)
                if json.loads(text)["code"] in (PUSH_TRADE, PUSH_DEPTH, PUSH_KLINE):
                    received.append(text)
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["frame"] for line in lines] == received
    assert {line["business"] for line in lines} == {"crypto"}
    assert all(list(line) == ["business", "frame"] for line in lines)


async def test_symbol_and_time_identify_every_trade_and_book_in_the_record(tmp_path: Path) -> None:
    """Two connections on the same codes: per stream no two pushes of one code share a ``t``, and ``t`` rises."""
    record = tmp_path / "sent.jsonl"
    options = sim_options(
        rate=3000, depth_rate=3000, kline_rate=0, max_pushes=400, max_depth_pushes=400, record_sent=record
    )
    async with Simulator(options) as sim, session(sim) as first, session(sim) as second:
        for ws in (first, second):
            await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "BTCUSDT,ETHUSDT"})
            await send_request(ws, SUBSCRIBE_DEPTH, "d", {"codes": "BTCUSDT"})
        await eventually(lambda: sim.stats.trades_sent == 400 and sim.stats.depth_sent == 400)
    last: dict[tuple[int, str], int] = {}
    for line in record.read_text().splitlines():
        push = json.loads(json.loads(line)["frame"])
        key = (push["code"], push["data"]["s"])
        assert push["data"]["t"] > last.get(key, -1), key
        last[key] = push["data"]["t"]
    assert set(last) == {(PUSH_TRADE, "BTCUSDT"), (PUSH_TRADE, "ETHUSDT"), (PUSH_DEPTH, "BTCUSDT")}


async def test_a_slow_client_is_skipped_not_buffered() -> None:
    """A client that stops reading gets pushes skipped once its bounded backlog is full."""
    options = sim_options(rate=0, depth_rate=20000, kline_rate=0)
    # The client reads nothing (max_queue=1 stops it reading the socket) and gives up on the
    # closing handshake quickly at the end, since it never reads the server's close frame.
    async with Simulator(options) as sim, connect(url_for(sim), max_queue=1, close_timeout=0.1) as ws:
        await send_request(ws, SUBSCRIBE_DEPTH, "d", {"codes": "BTCUSDT"})
        await eventually(lambda: sim.stats.pushes_skipped > 0)
        sent = sim.stats.depth_sent
        await asyncio.sleep(0.1)
        # Nothing is read, so the socket stays full: pushes keep being skipped, none are queued.
        assert sim.stats.depth_sent - sent <= options.backlog_limit
        assert sim.stats.pushes_skipped > 0


async def test_stats_and_client_info_follow_connections() -> None:
    """Counters and per-connection info track opens, closes, frames and subscribed codes."""
    async with Simulator(sim_options()) as sim:
        async with session(sim) as ws:
            await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "A,B"})
            await send_request(ws, SUBSCRIBE_KLINE, "k", {"arr": [{"type": 1, "codes": "C"}]})
            await recv_code(ws, 10007)
            assert sim.stats.connections == 1
            (info,) = sim.clients
            assert info.business == "crypto"
            assert info.codes == {"A", "B", "C"}
            assert [frame.code for frame in info.frames] == [10000, 10006]
        await eventually(lambda: sim.stats.connections == 0)
        assert sim.stats.connections_total == 1
        assert sim.clients == ()


async def test_stop_closes_clients_with_going_away_and_is_idempotent() -> None:
    """Stopping closes open connections with 1001 promptly, and a second stop does nothing."""
    sim = Simulator(sim_options())
    await sim.start()
    async with session(sim) as ws:
        await sim.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await recv_text(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    await sim.stop()


async def test_stats_endpoint_lists_each_connection_with_its_subscriptions_and_pushes() -> None:
    """``GET /sim/stats`` is plain JSON: per open connection its codes per stream, kline intervals and pushes."""
    options = sim_options(rate=2000, depth_rate=1000, kline_rate=0, max_pushes=40, max_depth_pushes=10)
    async with Simulator(options) as sim, session(sim) as first, session(sim, "stock") as second:
        await send_request(first, SUBSCRIBE_TRADE, "t", {"codes": "BTCUSDT,ETHUSDT"})
        arr = [{"type": 1, "codes": "BTCUSDT"}, {"type": 5, "codes": "BTCUSDT"}]
        await send_request(first, SUBSCRIBE_KLINE, "k", {"arr": arr})
        await send_request(second, SUBSCRIBE_DEPTH, "d", {"codes": "AAPL.US"})
        await recv_code(first, 10007)
        await recv_code(second, 10004)
        await eventually(lambda: sim.stats.trades_sent == 40 and sim.stats.depth_sent == 10)
        status, headers, body = await http_request(sim, "GET", "/sim/stats")
        assert status == 200
        assert headers["content-type"] == "application/json"
        document = json.loads(body)
        one, two = document["connections"]
        assert (one["id"], one["business"], two["id"], two["business"]) == (1, "crypto", 2, "stock")
        assert one["subscriptions"] == {"trade": ["BTCUSDT", "ETHUSDT"], "depth": [], "kline": {"BTCUSDT": [1, 5]}}
        assert two["subscriptions"] == {"trade": [], "depth": ["AAPL.US"], "kline": {}}
        assert one["pushes_sent"] == {"trade": 40, "depth": 0, "kline": 0}
        assert two["pushes_sent"] == {"trade": 0, "depth": 10, "kline": 0}
        assert one["frames_received"] == 2
        assert document["totals"]["pushes_sent"] == {"trade": 40, "depth": 10, "kline": 0}
        assert document["totals"]["connections"] == 2
    async with Simulator(sim_options()) as sim:
        async with session(sim):
            pass
        await eventually(lambda: sim.stats.connections == 0)
        status, _, body = await http_request(sim, "GET", "/sim/stats")
        assert status == 200
        assert json.loads(body)["connections"] == []
        assert json.loads(body)["totals"]["connections_total"] == 1
        assert (await http_request(sim, "DELETE", "/sim/stats"))[0] == 405
        assert sim.stats.handshakes_refused == 0
