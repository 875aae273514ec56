"""Kline backfill end to end: the simulator over real sockets (WebSocket and REST), the bridge in-process, Kafka.

The simulator's market clock runs at 60x (6000x for paging), so one 1m bar lasts a real second and
an outage of a few seconds is a gap of minutes of bars. The bridge keeps its own (real) wall clock:
a gap's window comes from the bars the WebSocket delivered, not from the bridge's clock, so the two
clocks need not agree (and Kafka refuses record timestamps hours in the future). The oracle is the
simulator's own REST answer at the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bridge.metrics import counter_totals
from bridge.simulator import Simulator, SimulatorOptions
from tests.harness import API_KEY, RunningBridge, bridge_config, eventually
from tests.kafka_tools import apache_schema, consume_all, decode

pytestmark = pytest.mark.kafka
CODES = ("BTCUSDT", "ETHUSDT")
SCALE = 60.0


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator at 60x with REST, a fifth of the minutes quiet, klines pushed many times a bar."""
    options = SimulatorOptions(
        port=0, rest_port=0, api_key=API_KEY, rate=20, kline_rate=40, time_scale=SCALE, quiet_bar_percent=20,
        rest_rate=50, seed=11,
    )  # fmt: skip
    async with Simulator(options) as simulator:
        yield simulator


def config_for(sim: Simulator, bootstrap: str, **backfill: Any) -> Any:
    """Klines (1m) and trades for two codes, REST at the simulator, a gap topic, fast retries."""
    return bridge_config(
        sim.url,
        bootstrap,
        [{"business": "crypto", "codes": list(CODES), "streams": ["kline", "trade"], "kline_types": ["1m"]}],
        source={"rest_url": sim.rest_url},
        kafka={"topics": {**_topics(), "gap": f"gaps.{time.monotonic_ns()}"}},
        backfill={
            "share": 1.0, "requests_per_second": 20, "retry_initial_seconds": 0.05, "retry_max_seconds": 0.2,
            "hold_live_seconds": 5, **backfill,
        },
    )  # fmt: skip


def _topics() -> dict[str, str]:
    from tests.harness import topics

    return topics("bf")


def metric(running: RunningBridge, name: str, label: str) -> dict[str, float]:
    """A counter's totals by one label."""
    return counter_totals(running.bridge.metrics.registry, name, label)


async def oracle(sim: Simulator, code: str, pages: int = 1) -> dict[int, dict[str, str]]:
    """The simulator's bars of ``code`` (1m) by start, oldest first, from its REST API (``pages`` pages of 500 walked
    back by hand), without the newest (maybe open)."""
    found: dict[int, dict[str, str]] = {}
    body: dict[str, Any] = {"codes": code, "klineType": 1, "klineNum": 500}
    async with httpx.AsyncClient(base_url=sim.rest_url, headers={"apiKey": API_KEY}) as client:
        for _ in range(pages):
            answer = await client.post("/crypto/v2/batch_kline", json=body)
            bars = answer.json()["data"][0]["respList"]
            found.update({int(bar["t"]): bar for bar in bars})
            body["timestamp"] = int(bars[-1]["t"])
    newest = max(found)
    return {start: found[start] for start in sorted(found) if start != newest}


async def klines_on_topic(running: RunningBridge, bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """Every kline record on the topic, decoded, per symbol in topic (partition) order."""
    schema = apache_schema("kline")
    per_symbol: dict[str, list[dict[str, Any]]] = {}
    for message in await consume_all(bootstrap, running.bridge.config.kafka.topics.kline):
        datum = decode(schema, message.value)
        per_symbol.setdefault(datum["symbol"], []).append(datum)
    return per_symbol


async def gaps_on_topic(running: RunningBridge, bootstrap: str) -> list[dict[str, Any]]:
    """Every gap record, decoded, in order."""
    topic = running.bridge.config.kafka.topics.gap
    assert topic is not None
    schema = apache_schema("gap")
    return [decode(schema, message.value) for message in await consume_all(bootstrap, topic)]


def start_of(record: dict[str, Any]) -> int:
    """A kline record's bar start in Unix seconds."""
    return int(record["open_time"].timestamp())


async def outage(sim: Simulator, running: RunningBridge, seconds: float) -> None:
    """Let bars flow, cut every connection and refuse reconnects for ``seconds``, then wait for data again."""
    await eventually(lambda: sim.stats.klines_sent > 200, what="kline pushes before the outage")
    await eventually(lambda: running.delivered > 0, timeout=60, what="records in Kafka before the outage")
    await sim.go_offline(seconds)
    await asyncio.sleep(seconds)
    await eventually(lambda: running.bridge.readiness()[0], timeout=20, what="the reconnect")


async def test_a_gap_is_backfilled_once_in_bar_order(
    sim: Simulator, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After a 4-minute outage every bar is on the topic (WS and REST together), REST bars once each and equal to the
    vendor's, in bar order per symbol, marked REST; only the bar open when data stopped is sent again, final; the
    follow-up gap record says full and lists trades as no_history; the key is in no log line at DEBUG."""
    caplog.set_level(logging.DEBUG)
    async with RunningBridge(config_for(sim, kafka_bootstrap)) as running:
        await outage(sim, running, 4.0)
        reconnected = time.monotonic()
        await eventually(
            lambda: bool(metric(running, "infoway_bridge_backfilled_gaps", "result")), timeout=30, what="the backfill"
        )
        filled_after = time.monotonic() - reconnected
        await asyncio.sleep(2.5)
        requests = metric(running, "infoway_bridge_rest_requests", "outcome")
        bars_metric = sum(metric(running, "infoway_bridge_backfilled_bars", "interval").values())
        assert await running.stop() == 0
        truth = {code: await oracle(sim, code) for code in CODES}
        topic = await klines_on_topic(running, kafka_bootstrap)
        gaps = await gaps_on_topic(running, kafka_bootstrap)
    rest_total = 0
    for code in CODES:
        records = topic[code]
        starts = [start_of(record) for record in records]
        assert starts == sorted(starts), f"{code}: bars out of order"
        rest = [record for record in records if record["source"] == "REST"]
        ws_starts = {start_of(record) for record in records if record["source"] == "WS"}
        rest_starts = [start_of(record) for record in rest]
        assert len(rest_starts) == len(set(rest_starts)), f"{code}: a REST bar twice"
        assert len(rest) >= 2, f"{code}: only {len(rest)} REST bars for a 4-minute gap"
        assert set(rest_starts) & ws_starts <= {min(rest_starts)}, "REST repeated a bar the WebSocket had"
        for record in rest:
            bar = truth[code][start_of(record)]
            assert (str(record["close"].normalize()), str(record["volume"].normalize())) == (
                str(type(record["close"])(bar["c"]).normalize()),
                str(type(record["volume"])(bar["v"]).normalize()),
            )
        window = [t for t in truth[code] if starts[0] <= t <= max(starts)]
        missing = sorted(set(window) - set(starts))
        assert missing == [], f"{code}: bars never published: {missing}"
        rest_total += len(rest)
    assert bars_metric == rest_total
    first, follow_up = gaps
    assert first["backfill"] is None
    report = follow_up["backfill"]
    assert (report["status"], report["bars"]) == ("full", rest_total)
    assert {(item["stream"], item["reason"]) for item in report["items"]} == {("kline", None), ("trade", "no_history")}
    assert not [r for r in caplog.records if API_KEY in r.getMessage() or API_KEY in str(r.args)]
    print(f"\nbackfill: {rest_total} bars over REST for {len(CODES)} codes, {filled_after:.2f}s after the reconnect, "
          f"REST requests {requests}")  # fmt: skip


async def test_rate_limited_rest_slows_backfill_and_the_live_stream_goes_on(
    sim: Simulator, kafka_bootstrap: str
) -> None:
    """While REST answers only rate limits, live klines keep arriving (the hold lets go after 1 s); once REST answers,
    the backfill completes, its bars after the live ones, every bar there."""
    config = config_for(sim, kafka_bootstrap, hold_live_seconds=1, attempts=10, retry_max_seconds=0.5)
    async with RunningBridge(config) as running:
        sim.rest.set_fault("rate-limit")
        await outage(sim, running, 3.0)
        delivered = running.delivered
        await asyncio.sleep(2.0)
        assert running.delivered > delivered + 20, "the live stream stalled behind the rate-limited backfill"
        assert not metric(running, "infoway_bridge_backfilled_gaps", "result")
        assert metric(running, "infoway_bridge_rest_requests", "outcome").get("rate_limited", 0) >= 3
        sim.rest.set_fault("none")
        await eventually(
            lambda: metric(running, "infoway_bridge_backfilled_gaps", "result") == {"full": 1.0}, timeout=30,
            what="the backfill once REST answers",
        )  # fmt: skip
        await running.stop()
        gaps = await gaps_on_topic(running, kafka_bootstrap)
    assert gaps[-1]["backfill"]["bars"] >= 2


async def test_a_spent_daily_quota_pauses_backfill_not_the_stream(sim: Simulator, kafka_bootstrap: str) -> None:
    """A 502 pauses backfill (gauge 1) while live data flows; stopping reports the gap as not filled (stopped)."""
    config = config_for(sim, kafka_bootstrap, hold_live_seconds=1)
    async with RunningBridge(config) as running:
        sim.rest.set_fault("quota")
        await outage(sim, running, 2.0)
        gauge = running.bridge.metrics.rest_quota_exhausted
        await eventually(lambda: gauge._value.get() == 1, what="the quota pause")
        delivered = running.delivered
        await asyncio.sleep(1.5)
        assert running.delivered > delivered + 20
        await running.stop()
        gaps = await gaps_on_topic(running, kafka_bootstrap)
    report = gaps[-1]["backfill"]
    assert report["status"] == "none"
    assert {item["reason"] for item in report["items"] if item["stream"] == "kline"} == {"stopped"}


async def test_a_401_stops_backfill_and_the_websocket_stream_runs_on(
    sim: Simulator, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A REST 401 ends backfill for the key with one ERROR; the gap is reported unauthorized; live data goes on."""
    async with RunningBridge(config_for(sim, kafka_bootstrap)) as running:
        sim.rest.set_fault("unauthorized")
        await outage(sim, running, 2.0)
        await eventually(lambda: bool(metric(running, "infoway_bridge_backfilled_gaps", "result")), what="the report")
        delivered = running.delivered
        await asyncio.sleep(1.0)
        assert running.delivered > delivered + 10
        assert not running.done
        await running.stop()
        gaps = await gaps_on_topic(running, kafka_bootstrap)
    report = gaps[-1]["backfill"]
    assert report["status"] == "none"
    assert {item["reason"] for item in report["items"] if item["stream"] == "kline"} == {"unauthorized"}
    refused = [r for r in caplog.records if r.levelno == logging.ERROR and "refused the key" in r.getMessage()]
    assert len(refused) == 1


async def test_a_reconnect_publishes_one_rest_book_per_code_marked_rest(sim: Simulator, kafka_bootstrap: str) -> None:
    """With snapshot_on_reconnect, each reconnect adds one batch_depth book per code, source REST, newer than any
    book the WebSocket had delivered, its connection_id the new connection's with /snapshot."""
    config = bridge_config(
        sim.url,
        kafka_bootstrap,
        [{"business": "crypto", "codes": list(CODES), "streams": ["depth"], "snapshot_on_reconnect": True}],
        source={"rest_url": sim.rest_url},
        kafka={"topics": _topics()},
    )
    async with RunningBridge(config) as running:
        await eventually(lambda: sim.stats.depth_sent > 50, what="books before the outage")
        await sim.go_offline(1.0)
        await asyncio.sleep(1.0)
        await eventually(lambda: sim.rest.stats.total("depth", "ok") == 1, timeout=20, what="the snapshot request")
        await asyncio.sleep(1.0)
        await running.stop()
    schema = apache_schema("depth")
    books = [decode(schema, m.value) for m in await consume_all(kafka_bootstrap, config.kafka.topics.depth)]
    snapshots = [book for book in books if book["source"] == "REST"]
    assert sorted(book["symbol"] for book in snapshots) == sorted(CODES)
    assert all(book["connection_id"].endswith("/snapshot") and book["bids"] and book["asks"] for book in snapshots)


async def test_a_gap_longer_than_a_page_is_paged_backwards(kafka_bootstrap: str) -> None:
    """At 6000x an outage of 7 s is about 700 minutes: each code needs two 500-bar pages (overlapping by one bar), and
    every vendor bar of the gap is published once from REST, in order."""
    options = SimulatorOptions(
        port=0, rest_port=0, api_key=API_KEY, rate=20, kline_rate=400, time_scale=6000, quiet_bar_percent=20,
        rest_rate=50, seed=5,
    )  # fmt: skip
    async with Simulator(options) as sim:
        config = config_for(sim, kafka_bootstrap, max_age_seconds=30 * 86400)
        async with RunningBridge(config) as running:
            await outage(sim, running, 7.0)
            reconnected = time.monotonic()
            await eventually(
                lambda: bool(metric(running, "infoway_bridge_backfilled_gaps", "result")), timeout=60, what="backfill"
            )
            filled_after = time.monotonic() - reconnected
            await running.stop()
            kline_requests = sim.rest.stats.total("kline", "ok")
            truth = {code: await oracle(sim, code, pages=4) for code in CODES}
        topic = await klines_on_topic(running, kafka_bootstrap)
    total = 0
    for code in CODES:
        rest = [start_of(record) for record in topic[code] if record["source"] == "REST"]
        assert rest == sorted(set(rest)), f"{code}: REST bars repeated or out of order"
        inside = [t for t in truth[code] if rest[0] <= t <= rest[-1]]
        assert rest == inside, f"{code}: REST bars differ from the vendor's inside the gap"
        assert len(rest) > 500, f"{code}: {len(rest)} bars do not need a second page"
        total += len(rest)
    assert kline_requests >= 2 * len(CODES)
    print(f"\npaged backfill: {total} bars, {kline_requests} kline requests, {filled_after:.2f}s after the reconnect")
