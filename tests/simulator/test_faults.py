"""The gateway limits and fault modes over real sockets on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from bridge.simulator import GatewayRules, Simulator
from tests.simulator.support import (
    WAIT,
    eventually,
    frames_for,
    is_push,
    read_until_closed,
    recv_code,
    recv_json,
    recv_text,
    send_request,
    session,
    sim_options,
    url_for,
)

SUBSCRIBE_TRADE, SUBSCRIBE_DEPTH, HEARTBEAT = 10000, 10003, 10010
LIMIT_501 = "Request frequency exceed the limit\uff1a60 times per minute"


async def test_close_after_n_pushes_drops_each_connection_without_a_close_frame() -> None:
    """Each connection (stock greeting and all) gets exactly N pushes, then its TCP stream ends with no close frame."""
    async with Simulator(sim_options(rate=2000, rules=GatewayRules(close_after_pushes=7))) as sim:
        for business in ("stock", "crypto"):
            async with session(sim, business) as ws:
                await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "AAPL.US,BTCUSDT"})
                frames, closed = await read_until_closed(ws)
            assert isinstance(closed, ConnectionClosedError)
            assert closed.rcvd is None
            assert frames[0] == '{"code":10001,"trace":"t","msg":"ok"}'
            assert len([frame for frame in frames if is_push(frame)]) == 7
            assert len(frames) == 8
        await eventually(lambda: sim.stats.connections == 0)
        assert sim.stats.connections_aborted == 2
        assert sim.stats.trades_sent == 14


async def test_a_connection_that_stops_heartbeating_gets_513_and_a_normal_close() -> None:
    """Heartbeats keep the connection; once they stop for the timeout, 513 comes and then a 1000 close."""
    loop = asyncio.get_running_loop()
    async with Simulator(sim_options(rules=GatewayRules(heartbeat_timeout=0.3))) as sim, session(sim) as ws:
        for i in range(5):
            await send_request(ws, HEARTBEAT, f"h{i}")
            await asyncio.sleep(0.1)
        assert sim.stats.heartbeat_timeouts == 0
        await send_request(ws, HEARTBEAT, "last")
        last = loop.time()
        frames, closed = await read_until_closed(ws)
        waited = loop.time() - last
        assert frames == ['{"traceId":"","code":513,"msg":"Websocket heartbeat timeout"}']
        assert isinstance(closed, ConnectionClosedOK)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1000
        assert 0.3 <= waited < 0.6
        assert sim.stats.heartbeat_timeouts == 1


async def test_the_heartbeat_clock_starts_at_the_handshake() -> None:
    """A connection that never sends a heartbeat is cut one timeout after it opened, subscribes or not."""
    loop = asyncio.get_running_loop()
    async with Simulator(sim_options(rate=0, rules=GatewayRules(heartbeat_timeout=0.2))) as sim:
        opened = loop.time()
        async with session(sim) as ws:
            await send_request(ws, SUBSCRIBE_TRADE, "s", {"codes": "BTCUSDT"})
            assert await recv_code(ws, 10001) == {"code": 10001, "trace": "s", "msg": "ok"}
            assert await recv_code(ws, 513) == {"traceId": "", "code": 513, "msg": "Websocket heartbeat timeout"}
        assert 0.2 <= loop.time() - opened < 0.5


async def test_only_the_nth_subscribe_of_the_server_gets_501_and_its_connection_is_cut() -> None:
    """Subscribes are numbered server-wide: the 3rd gets 501 with its trace and a close, the 4th is acked."""
    async with (
        Simulator(sim_options(rate=0, rules=GatewayRules(fail_subscribe_nth=3))) as sim,
        session(sim) as first,
        session(sim) as second,
    ):
        await send_request(first, SUBSCRIBE_TRADE, "s1", {"codes": "BTCUSDT"})
        await recv_code(first, 10001)
        await send_request(second, SUBSCRIBE_DEPTH, "s2", {"codes": "BTCUSDT"})
        await recv_code(second, 10004)
        await send_request(second, SUBSCRIBE_TRADE, "s3", {"codes": "ETHUSDT"})
        frames, closed = await read_until_closed(second)
        assert frames == [f'{{"traceId":"s3","code":501,"msg":"{LIMIT_501}"}}']
        assert isinstance(closed, ConnectionClosedOK)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1000
        await send_request(first, SUBSCRIBE_TRADE, "s4", {"codes": "ETHUSDT"})
        assert await recv_code(first, 10001) == {"code": 10001, "trace": "s4", "msg": "ok"}
        (info,) = sim.clients
        assert info.codes == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (401, b'{"message":"Invalid API key in request"}', "application/json"),
        (429, b'{"message":"Too many requests"}', "application/json"),
        (503, b"Service Unavailable", "text/plain; charset=utf-8"),
        (524, b"A Timeout Occurred", "text/plain; charset=utf-8"),
    ],
)
async def test_handshakes_with_the_right_key_are_refused_with_the_chosen_status(
    status: int, body: bytes, content_type: str
) -> None:
    """While ``refuse_handshake_status`` is set with no count, every handshake gets it, with the vendor's body."""
    async with Simulator(sim_options(rules=GatewayRules(refuse_handshake_status=status))) as sim:
        for _ in range(3):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url_for(sim)):
                    pass
            assert refused.value.response.status_code == status
            assert refused.value.response.body == body
            assert refused.value.response.headers["Content-Type"] == content_type
        assert sim.stats.handshakes_refused == 3
        assert sim.stats.connections_total == 0


async def test_only_the_first_k_handshakes_are_refused_then_accepted() -> None:
    """With ``refuse_handshakes=2`` two handshakes get the status, the third connects; wrong keys stay 401."""
    async with Simulator(sim_options(rules=GatewayRules(refuse_handshake_status=503, refuse_handshakes=2))) as sim:
        with pytest.raises(InvalidStatus) as wrong_key:
            async with connect(url_for(sim, key="wrong")):
                pass
        assert wrong_key.value.response.status_code == 401
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url_for(sim)):
                    pass
            assert refused.value.response.status_code == 503
        async with session(sim):
            pass
        assert sim.stats.handshakes_refused == 3
        assert sim.stats.connections_total == 1


async def test_the_nth_subscribe_gets_the_prefixed_505_and_the_connection_stays() -> None:
    """The 2nd subscribe is answered ``Subscribe fail: {...505...}`` in text, adds nothing, and data keeps coming."""
    async with (
        Simulator(sim_options(rate=500, rules=GatewayRules(subscribe_fail_505_nth=2))) as sim,
        session(sim) as ws,
    ):
        await send_request(ws, SUBSCRIBE_TRADE, "s1", {"codes": "BTCUSDT"})
        await recv_code(ws, 10001)
        await send_request(ws, SUBSCRIBE_TRADE, "s2", {"codes": "ETHUSDT"})
        async with asyncio.timeout(WAIT):
            while not (text := await recv_text(ws)).startswith("Subscribe"):
                pass
        assert text == 'Subscribe fail: {"traceId":"s2","code":505,"msg":"Single WS subscribe exceeds the limit 600"}'
        (info,) = sim.clients
        assert info.codes == {"BTCUSDT"}
        pushes = [frame for frame in await frames_for(ws, 0.1) if frame["code"] == 10002]
        assert pushes
        assert {push["data"]["s"] for push in pushes} == {"BTCUSDT"}
        await send_request(ws, SUBSCRIBE_TRADE, "s3", {"codes": "ETHUSDT"})
        await recv_code(ws, 10001)


async def test_garbage_every_n_pushes_cycles_through_every_kind_and_is_recorded(tmp_path: Path) -> None:
    """After every 3rd push one bad frame comes, kinds in order; the record marks them; max_pushes ignores them."""
    record = tmp_path / "sent.jsonl"
    options = sim_options(
        rate=2000, depth_rate=0, kline_rate=0, max_pushes=15, record_sent=record, rules=GatewayRules(garbage_every=3)
    )
    async with Simulator(options) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "t", {"codes": "BTCUSDT"})
        assert await recv_json(ws) == {"code": 10001, "trace": "t", "msg": "ok"}
        received: list[str | bytes] = []
        async with asyncio.timeout(WAIT):
            while len(received) < 20:
                received.append(await ws.recv())
        assert await frames_for(ws, 0.1) == []
        assert sim.stats.trades_sent == 15
        assert sim.stats.garbage_sent == 5
    assert [is_push(frame) for frame in received] == [True, True, True, False] * 5
    not_json, truncated, binary, unknown, bad_price = received[3::4]
    assert isinstance(not_json, str)
    assert not not_json.startswith("{")
    assert "{" in not_json or "[" in not_json
    assert truncated == '{"code":10002,"data":{"s":"BTCUSDT","t":'
    assert isinstance(binary, bytes)
    assert unknown == '{"code":10099,"data":{}}'
    assert isinstance(bad_price, str)
    price = json.loads(bad_price)
    assert price["code"] == 10002
    assert price["data"]["s"] == "BTCUSDT"
    assert price["data"]["p"] == "abc"
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["frame"] for line in lines] == [
        frame.decode("latin-1") if isinstance(frame, bytes) else frame for frame in received
    ]
    assert [line.get("garbage") for line in lines[3::4]] == [
        "not_json",
        "invalid_json",
        "binary",
        "unknown_code",
        "bad_price",
    ]
    assert all(list(line) == ["business", "frame"] for index, line in enumerate(lines) if index % 4 != 3)


async def test_sixty_heartbeats_in_a_minute_are_within_the_budget() -> None:
    """60 frames sent at once are fine: no reply, no violation, the connection stays open."""
    async with Simulator(sim_options()) as sim, session(sim) as ws:
        for i in range(60):
            await send_request(ws, HEARTBEAT, f"h{i + 1}")
        await eventually(lambda: sim.stats.frames_received == 60)
        assert await frames_for(ws, 0.1) == []
        assert sim.stats.budget_violations == 0
        assert len(sim.clients) == 1
        assert sim.stats.max_frames_in_window_per_key == 60


async def test_the_sixty_first_frame_in_a_minute_gets_501_and_a_close() -> None:
    """The 61st heartbeat sent quickly is answered 501 with its trace, and the connection is closed normally."""
    async with Simulator(sim_options()) as sim, session(sim) as ws:
        for i in range(61):
            await send_request(ws, HEARTBEAT, f"h{i + 1}")
        frames, closed = await read_until_closed(ws)
        assert frames == [f'{{"traceId":"h61","code":501,"msg":"{LIMIT_501}"}}']
        assert isinstance(closed, ConnectionClosedOK)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1000
        assert sim.stats.budget_violations == 1


async def test_the_per_key_maximum_counts_frames_of_all_connections_in_a_rolling_window() -> None:
    """Two connections' frames add up for the key while each stays within its own budget; an old burst rolls out."""
    async with Simulator(sim_options()) as sim, session(sim) as first, session(sim) as second:
        for i in range(40):
            await send_request(first, HEARTBEAT, f"a{i}")
        for i in range(30):
            await send_request(second, HEARTBEAT, f"b{i}")
        await eventually(lambda: sim.stats.frames_received == 70)
        assert sim.stats.max_frames_in_window_per_key == 70
        assert sim.stats.budget_violations == 0
    async with Simulator(sim_options(rules=GatewayRules(frame_window=0.2))) as sim:
        async with session(sim) as first:
            for i in range(40):
                await send_request(first, HEARTBEAT, f"a{i}")
            await eventually(lambda: sim.stats.frames_received == 40)
        await asyncio.sleep(0.25)
        async with session(sim) as second:
            for i in range(30):
                await send_request(second, HEARTBEAT, f"b{i}")
            await eventually(lambda: sim.stats.frames_received == 70)
        assert sim.stats.max_frames_in_window_per_key == 40


async def test_a_subscribe_past_600_codes_is_refused_with_505_and_adds_nothing() -> None:
    """601 codes in one subscribe get the prefixed 505; 600 fit; one more on another stream is refused too."""
    codes = [f"C{i}.US" for i in range(601)]
    async with Simulator(sim_options(rate=0)) as sim, session(sim) as ws:
        await send_request(ws, SUBSCRIBE_TRADE, "big", {"codes": ",".join(codes)})
        assert await recv_text(ws) == (
            'Subscribe fail: {"traceId":"big","code":505,"msg":"Single WS subscribe exceeds the limit 600"}'
        )
        assert sim.clients[0].codes == frozenset()
        await send_request(ws, SUBSCRIBE_TRADE, "fits", {"codes": ",".join(codes[:600])})
        assert await recv_json(ws) == {"code": 10001, "trace": "fits", "msg": "ok"}
        await send_request(ws, SUBSCRIBE_DEPTH, "one-more", {"codes": codes[600]})
        assert (await recv_text(ws)).startswith('Subscribe fail: {"traceId":"one-more","code":505,')
        await send_request(ws, SUBSCRIBE_DEPTH, "held", {"codes": codes[0]})
        assert await recv_json(ws) == {"code": 10004, "trace": "held", "msg": "ok"}
        assert len(sim.clients[0].codes) == 600


async def test_drop_connections_aborts_every_connection_without_a_close_frame() -> None:
    """``drop_connections`` cuts every open connection like a network reset and says how many."""
    async with Simulator(sim_options(rate=1000)) as sim, session(sim) as first, session(sim, "stock") as second:
        await send_request(first, SUBSCRIBE_TRADE, "t", {"codes": "BTCUSDT"})
        await recv_code(first, 10002)
        assert await sim.drop_connections() == 2
        assert sim.clients == ()
        for ws in (first, second):
            _, closed = await read_until_closed(ws)
            assert isinstance(closed, ConnectionClosedError)
            assert closed.rcvd is None
        assert sim.stats.connections_aborted == 2
        assert await sim.drop_connections() == 0
        async with session(sim):
            pass
