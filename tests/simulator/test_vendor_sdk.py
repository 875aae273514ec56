"""The vendor's own Python client (``infoway-sdk``) as an independent oracle of the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from infoway.ws import InfowayWebSocket

from bridge.simulator import Simulator
from tests.simulator.support import API_KEY, WAIT, sim_options


async def test_vendor_client_receives_trades_depth_and_klines() -> None:
    """``InfowayWebSocket`` with ``parse=True`` connects, subscribes and normalises every push kind."""
    trades: list[dict[str, Any]] = []
    books: list[dict[str, Any]] = []
    bars: list[dict[str, Any]] = []
    errors: list[Exception] = []
    welcomed = asyncio.Event()
    enough = asyncio.Event()

    def on_frame(text: str) -> None:
        if '"code":200' in text:
            welcomed.set()

    def keep(into: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def callback(data: dict[str, Any]) -> None:
            into.append(data)
            if len(trades) >= 20 and len(books) >= 5 and len(bars) >= 3:
                enough.set()

        return callback

    async def on_error(error: Exception) -> None:
        errors.append(error)

    async with Simulator(sim_options(rate=500, depth_rate=200, kline_rate=100)) as sim:
        # parse=True runs the SDK's own normalisers on every push, before our callbacks.
        ws = InfowayWebSocket(api_key=API_KEY, business="crypto", base_url=sim.url, parse=True)
        ws.on_frame = on_frame
        ws.on_trade, ws.on_depth, ws.on_kline = keep(trades), keep(books), keep(bars)
        ws.on_error = on_error
        running = asyncio.create_task(ws.connect())
        try:
            async with asyncio.timeout(WAIT):
                await welcomed.wait()
                await ws.subscribe_trade(["BTCUSDT", "ETHUSDT"])
                await ws.subscribe_depth(["BTCUSDT"])
                await ws.subscribe_kline(["BTCUSDT"], 1)
                await enough.wait()
        finally:
            await ws.close()
            async with asyncio.timeout(WAIT):
                await running

    assert errors == []
    assert {trade["s"] for trade in trades} == {"BTCUSDT", "ETHUSDT"}
    for trade in trades:
        assert isinstance(trade["p"], Decimal)
        assert trade["turnover"] == trade["p"] * trade["v"]
        assert isinstance(trade["t"], datetime)
        assert trade["t"].utcoffset() is not None
    for book in books:
        # The SDK transposes columns into (price, size) levels.
        (best_ask, _), (best_bid, _) = book["a"][0], book["b"][0]
        assert isinstance(best_ask, Decimal)
        assert best_bid < best_ask
    for bar in bars:
        assert bar["ty"] == 1
        assert isinstance(bar["t"], datetime)
        assert bar["t"].second == 0
        assert bar["l"] <= min(bar["o"], bar["c"])
        assert isinstance(bar["change_percent"], Decimal)
