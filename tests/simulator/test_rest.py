"""The simulator's REST API over a real socket, read with the bridge's own REST client: bars, quirks, limits, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bridge.errors import RestCause, RestError
from bridge.protocol.codes import KlineInterval
from bridge.rest.budget import RequestBudget
from bridge.rest.client import RestClient
from bridge.rest.paging import kline_body
from bridge.simulator import Simulator, SimulatorOptions
from bridge.timing import RetryPolicy

KEY = "sim-rest-key"


async def client_of(sim: Simulator, key: str = KEY, attempts: int = 1) -> RestClient:
    """Our client against the simulator, fast retries, a generous budget."""
    return RestClient(
        sim.rest_url, key, RequestBudget(1000, 1.0, 0.0), retry=RetryPolicy(0.01, 0.02), attempts=attempts
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator with REST on a free port, one 1m bar per 0.1 s real time and a quarter of the minutes quiet."""
    options = SimulatorOptions(
        port=0, rest_port=0, api_key=KEY, rate=200, kline_rate=200, time_scale=600, quiet_bar_percent=25,
        rest_rate=1000, rest_history_seconds=3600,
    )  # fmt: skip
    async with Simulator(options) as simulator:
        yield simulator


async def trade_for(sim: Simulator, seconds: float) -> None:
    """Subscribe BTCUSDT 1m klines over the WebSocket so the market trades, then leave it trading unsubscribed."""
    import websockets

    async with websockets.connect(f"{sim.url}?business=crypto&apikey={KEY}") as ws:
        await ws.recv()
        await ws.send('{"code":10006,"trace":"k","data":{"arr":[{"type":1,"codes":"BTCUSDT"}]}}')
        await asyncio.sleep(seconds)


async def test_klines_are_newest_first_sparse_and_capped(sim: Simulator) -> None:
    """One code gets up to 500 bars newest first, with quiet minutes missing; several codes get 2 bars each."""
    await trade_for(sim, 0.5)
    client = await client_of(sim)
    try:
        # Unsubscribed, the market goes on trading: a minute is 0.1 s, and a quarter of them are quiet, so how
        # many bars 1.5 s brings is a draw; wait (bounded) for the ten the assertions need rather than hope.
        bars: list[dict[str, Any]] = []
        for _ in range(100):
            data = await client.klines("crypto", kline_body("BTCUSDT", KlineInterval.MIN_1, 500, None))
            bars = data[0]["respList"]
            if len(bars) >= 10:
                break
            await asyncio.sleep(0.1)
        starts = [int(bar["t"]) for bar in bars]
        assert starts == sorted(starts, reverse=True)
        assert len(starts) >= 10
        assert all(start % 60 == 0 for start in starts)
        assert any(b - a > 60 for a, b in zip(starts[::-1], starts[::-1][1:], strict=False)), "no quiet minute"
        assert set(bars[0]) == {"t", "o", "h", "l", "c", "v", "vw", "pc", "pca"}
        older = await client.klines("crypto", kline_body("BTCUSDT", KlineInterval.MIN_1, 3, starts[5]))
        assert [int(bar["t"]) for bar in older[0]["respList"]] == starts[5:8]
        several = await client.request(
            "kline", "POST", "/crypto/v2/batch_kline", {"codes": "BTCUSDT,ETHUSDT", "klineType": 1, "klineNum": 50}
        )
        assert [len(entry["respList"]) <= 2 for entry in several] == [True, True]
    finally:
        await client.aclose()


async def vendor_error(client: RestClient, body: dict[str, Any], business: str = "crypto") -> RestError:
    """The error a kline request gets."""
    with pytest.raises(RestError) as caught:
        await client.klines(business, body)
    return caught.value


async def test_limits_and_codes_come_back_as_the_vendor_wraps_them(sim: Simulator) -> None:
    """501 bars, 101 codes, an unpadded HK code and a too-old timestamp are refused as HTTP 200 ret 500 quirks."""
    client = await client_of(sim)
    try:
        too_many_bars = await vendor_error(client, {"codes": "BTCUSDT", "klineType": 1, "klineNum": 501})
        assert (too_many_bars.cause, too_many_bars.code) == (RestCause.BAD_REQUEST, 503)
        codes = ",".join(f"C{i}" for i in range(101))
        too_many_codes = await vendor_error(client, {"codes": codes, "klineType": 1, "klineNum": 2})
        assert too_many_codes.code == 505
        unpadded = await vendor_error(client, {"codes": "700.HK", "klineType": 1, "klineNum": 2}, "stock")
        assert unpadded.cause is RestCause.UNKNOWN_CODES
        old = await vendor_error(client, {"codes": "BTCUSDT", "klineType": 1, "klineNum": 2, "timestamp": 1_000_000})
        assert old.cause is RestCause.HISTORY_LIMIT
        info = await client.package_info()
        assert info["apiNumPerSec"] == 1000
        depth = await client.depth("crypto", ("BTCUSDT", "ETHUSDT"))
        assert [entry["s"] for entry in depth] == ["BTCUSDT", "ETHUSDT"]
    finally:
        await client.aclose()


async def test_faults_wrong_key_and_rate_limit(sim: Simulator) -> None:
    """A wrong key is 401; the fault modes answer rate limits, the daily quota and a bare 500; the key is per header."""
    wrong = await client_of(sim, key="not-the-key")
    client = await client_of(sim, attempts=2)
    try:
        assert (await vendor_error(wrong, kline_body("BTCUSDT", KlineInterval.MIN_1, 2, None))).code == 401
        async with httpx.AsyncClient() as raw:
            answer = await raw.get(f"{sim.rest_url}/sim/rest-fault", params={"mode": "rate-limit"})
            assert answer.json() == {"mode": "rate-limit"}
        limited = await vendor_error(client, kline_body("BTCUSDT", KlineInterval.MIN_1, 2, None))
        assert limited.cause is RestCause.RATE_LIMITED
        assert sim.rest.stats.total("kline", "rate_limited") == 2
        sim.rest.set_fault("quota")
        assert (await vendor_error(client, kline_body("BTCUSDT", KlineInterval.MIN_1, 2, None))).code == 502
        sim.rest.set_fault("ret500")
        assert (await vendor_error(client, kline_body("BTCUSDT", KlineInterval.MIN_1, 2, None))).cause is (
            RestCause.SERVER_ERROR
        )
    finally:
        await wrong.aclose()
        await client.aclose()
