"""Nothing lost, nothing twice: the bridge as a process through broker outages, SIGTERM, kill -9 and a damaged spool.

Each test reads the trade topic back with ``isolation.level=read_committed`` and compares it,
symbol by symbol, with what the simulator wrote to its sockets (``tests/chaos/support.py``).
"""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from bridge.positions import position_group
from bridge.records import EPOCH
from bridge.simulator import GatewayRules, Simulator
from tests.chaos.support import (
    BridgeProcess,
    Comparison,
    compare,
    missing_times,
    recording,
    sent_trades,
    trades_in_kafka,
)
from tests.conftest import LocalBroker
from tests.harness import topics
from tests.kafka_tools import apache_schema, commit_offset, consume_all, decode

pytestmark = pytest.mark.kafka


def simulator(tmp_path: Path, rate: float) -> Simulator:
    """The vendor at ``rate`` trades a second over the bridge's ten codes, recording what it sends.

    Its heartbeat timeout (20 s) and the websockets keepalive (a ping every 20 s) would cut a
    bridge that stopped reading its socket: 513 or 1011 (counted in ``stats``).
    """
    return Simulator(recording(tmp_path, rate, rules=GatewayRules(heartbeat_timeout=20.0)))


async def test_a_60_second_broker_outage_at_5000_pushes_a_second_loses_nothing(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """Kafka down for 60 s under 5,000 trades/s: the socket is read throughout (no 513, no reconnect), the
    spool holds the backlog, and after the broker returns every trade is in Kafka once, in order."""
    names = topics("outage")
    async with simulator(tmp_path, rate=5000) as sim:
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 10_000)
        await asyncio.to_thread(own_broker.stop)
        await bridge.idle_for(60)
        spooled = await asyncio.to_thread(bridge.metric, "infoway_bridge_spool_records")
        await asyncio.to_thread(own_broker.start, keep_data=True)
        back = asyncio.get_running_loop().time()
        while await asyncio.to_thread(bridge.metric, "infoway_bridge_spool_oldest_record_age_seconds") > 2:
            bridge.sample_memory()
            await asyncio.sleep(0.2)
        drain_seconds = asyncio.get_running_loop().time() - back
        stats = sim.stats
    # The simulator has stopped: everything it sent was read before its close frame.
    result = await _drained_and_compared(bridge, tmp_path, own_broker, names["trade"])
    assert spooled > 200_000, "the outage's trades waited in the spool"
    assert (stats.heartbeat_timeouts, stats.connections_total) == (0, 1), "the socket was read all along"
    assert stats.cut_at_stop == 0, "the bridge read everything the simulator sent before its close"
    assert (result.missing, result.duplicates, result.out_of_order) == (0, 0, 0), result
    assert result.delivered == result.sent > 300_000
    assert bridge.peak_rss_kib < 300 * 1024, f"peak RSS {bridge.peak_rss_kib // 1024} MiB"
    print(
        f"outage: {int(spooled)} trades spooled in 60 s, drained (with the live 5,000/s) in {drain_seconds:.1f} s "
        f"from the broker's restart; peak RSS {bridge.peak_rss_kib // 1024} MiB; {result.sent} sent, "
        f"{result.delivered} in Kafka"
    )


async def test_sigterm_leaves_the_backlog_in_the_spool_and_a_restart_delivers_it_first(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """SIGTERM while Kafka is down exits 0 within the grace; the next run delivers the spooled trades before
    new ones, and nothing arrives twice."""
    names = topics("sigterm")
    async with simulator(tmp_path, rate=2000) as sim:
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 2000)
        await asyncio.to_thread(own_broker.stop)
        await bridge.idle_for(3)
        assert await bridge.stop(signal.SIGTERM, timeout=30) == 0
        left = bridge.log().count("stay in the spool")
        await asyncio.to_thread(own_broker.start, keep_data=True)
        bridge.start()
        await bridge.idle_for(3)
    result = await _drained_and_compared(bridge, tmp_path, own_broker, names["trade"])
    assert left == 1, "the first run said what it left in the spool"
    # The first run closed its socket and read on until the vendor's close: what the vendor sent before
    # it saw that close is in the spool, and so in Kafka.
    assert sim.stats.cut_at_stop == 0
    assert (result.missing, result.duplicates, result.out_of_order) == (0, 0, 0), result
    print(f"SIGTERM: {result.missing} of {result.sent} trades lost, {left} line on what stayed in the spool")


async def test_kill_9_during_an_outage_loses_at_most_the_sync_window(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """kill -9 while Kafka is down: the next run recovers the spool, says so in one line, and delivers it;
    what is missing is one stretch per symbol no longer than the sync window (50 ms) and unread frames."""
    names = topics("kill")
    async with simulator(tmp_path, rate=2000) as sim:
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 2000)
        await asyncio.to_thread(own_broker.stop)
        await bridge.idle_for(3)
        assert await bridge.stop(signal.SIGKILL) == -signal.SIGKILL
        await asyncio.to_thread(own_broker.start, keep_data=True)
        bridge.start()
        await bridge.idle_for(3)
    result = await _drained_and_compared(bridge, tmp_path, own_broker, names["trade"])
    recovery = [line for line in bridge.log().split("---- run 2", 1)[1].splitlines() if "to deliver first" in line]
    assert len(recovery) == 1, recovery
    assert (result.duplicates, result.out_of_order) == (0, 0), result
    # One stretch per symbol, at the kill.
    assert sim.stats.cut_at_stop == 0
    assert result.missing_runs <= len(sent_trades(tmp_path / "sent.jsonl")), result
    # 2,000/s for the 50 ms sync window is 100; allow the frames in flight on the socket besides.
    assert result.missing <= 400, result
    print(f"kill -9: {result.missing} of {result.sent} trades lost; {recovery[0]}")


async def test_a_transaction_kafka_lost_after_acknowledging_it_is_delivered_again(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """The spool's checkpoint says Kafka acknowledged 500 records more than Kafka's committed position covers
    (what a broker stopped in the middle of a commit leaves; seen on Kafka 4.4): the next run believes Kafka,
    says so, and delivers those 500 again, so none is missing and none is twice."""
    names = topics("rewind")
    async with simulator(tmp_path, rate=2000) as sim:
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 2000)
        await asyncio.to_thread(own_broker.stop)
        await bridge.wait_for("infoway_bridge_spool_records", 1000, timeout=30)
        assert await bridge.stop(signal.SIGTERM, timeout=30) == 0
        checkpoint = tmp_path / "spool" / "acknowledged"
        acknowledged = int(checkpoint.read_text(encoding="ascii"))
        checkpoint.write_text(f"{acknowledged + 500}\n", encoding="ascii")
        await asyncio.to_thread(own_broker.start, keep_data=True)
        bridge.start()
        await bridge.idle_for(3)
    result = await _drained_and_compared(bridge, tmp_path, own_broker, names["trade"])
    assert (result.missing, result.duplicates, result.out_of_order) == (0, 0, 0), result
    run_2 = bridge.log().split("---- run 2", 1)[1]
    assert f"behind the {acknowledged + 500} this bridge recorded as acknowledged" in run_2
    lost = re.search(r"Kafka lost (\d+) record\(s\) it had acknowledged", run_2)
    # At least the 500; more when the broker's stop above also lost the round it was committing.
    assert lost is not None, run_2[-3000:]
    assert int(lost[1]) >= 500, lost[0]
    assert "no longer held here" not in run_2


async def test_a_committed_offset_behind_records_kafka_holds_delivers_nothing_twice(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """Kafka's committed position 500 behind records its topics hold (a lost commit marker on the offsets'
    partition, seen on Kafka 4.4): the next run finds those records in the topics and delivers none of them
    again."""
    names = topics("behind")
    async with simulator(tmp_path, rate=2000) as sim:
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 3000)
        assert await bridge.stop(signal.SIGTERM, timeout=30) == 0
        acknowledged = int((tmp_path / "spool" / "acknowledged").read_text(encoding="ascii"))
        identity = (tmp_path / "spool" / "identity").read_text(encoding="ascii").strip()
        group = position_group(f"chaos.{tmp_path.name}", identity)
        await commit_offset(own_broker.bootstrap, group, TopicPartition(names["offsets"], 0), acknowledged - 500)
        bridge.start()
        await bridge.idle_for(3)
    result = await _drained_and_compared(bridge, tmp_path, own_broker, names["trade"])
    assert (result.missing, result.duplicates, result.out_of_order) == (0, 0, 0), result
    run_2 = bridge.log().split("---- run 2", 1)[1]
    assert "the topics hold every one of those records: nothing is delivered again" in run_2


async def test_a_torn_tail_and_a_flipped_byte_cost_one_record_each(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """A spool left with a torn last entry and a flipped byte in a middle segment: the next run names both
    (file and byte) and delivers every other record."""
    names = topics("damage")
    async with simulator(tmp_path, rate=2000) as sim:
        small_segments = {"segment_bytes": 256 * 1024}
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 1000, spool=small_segments)
        await asyncio.to_thread(own_broker.stop)
        await bridge.wait_for("infoway_bridge_spool_records", 12_000, timeout=30)
    # The simulator has closed: the bridge read everything it sent. Kafka is down, so it stays spooled.
    assert await bridge.stop() == 0
    segments = sorted((tmp_path / "spool").glob("*.seg"))
    assert len(segments) >= 3
    middle = segments[len(segments) // 2]
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0x01
    middle.write_bytes(bytes(data))
    segments[-1].write_bytes(segments[-1].read_bytes()[:-3])
    await asyncio.to_thread(own_broker.start, keep_data=True)
    bridge.start()
    result = await _drained_and_compared(bridge, tmp_path, own_broker, names["trade"])
    log = bridge.log()
    assert f"torn entry in {segments[-1].name} at byte" in log
    assert (result.duplicates, result.out_of_order) == (0, 0), result
    assert result.missing == 2, "only the torn and the flipped entries are lost"


@pytest.mark.parametrize("policy", ["stop-reading", "drop-oldest"])
async def test_a_full_spool_keeps_its_policy_and_its_memory_bound(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess], policy: str
) -> None:
    """At spool.max_bytes, stop-reading closes the connections (a spool_full gap) until Kafka drains it, and
    drop-oldest keeps reading and counts what it deletes; memory stays bounded either way."""
    names = {**topics("full"), "gap": f"full.gaps.{tmp_path.name}"}
    limits = {"max_bytes": 4 << 20, "segment_bytes": 256 * 1024, "when_full": policy}
    async with simulator(tmp_path, rate=4000) as sim:
        bridge = await _producing(tmp_path, sim, own_broker, names, bridges, 1000, spool=limits)
        await asyncio.to_thread(own_broker.stop)
        if policy == "stop-reading":
            await bridge.wait_for("infoway_bridge_reconnects_total", 1, timeout=60, reason="spool_full")
            await bridge.idle_for(3)
            assert await asyncio.to_thread(bridge.metric, "infoway_bridge_connection_up") == 0
        else:
            await bridge.wait_for("infoway_bridge_spool_dropped_records_total", 1, timeout=60)
            await bridge.idle_for(3)
            assert await asyncio.to_thread(bridge.metric, "infoway_bridge_connection_up") == 1
        assert await asyncio.to_thread(bridge.metric, "infoway_bridge_spool_bytes") < 5 << 20
        await asyncio.to_thread(own_broker.start, keep_data=True)
        await bridge.wait_for("infoway_bridge_connection_up", 1, timeout=60)
        await bridge.idle_for(2)
    await _drain(bridge)
    dropped = await asyncio.to_thread(bridge.metric, "infoway_bridge_spool_dropped_records_total")
    assert await bridge.stop() == 0
    sent = sent_trades(tmp_path / "sent.jsonl")
    delivered = await trades_in_kafka(own_broker.bootstrap, names["trade"])
    result = compare(sent, delivered)
    assert (result.duplicates, result.out_of_order) == (0, 0), result
    assert bridge.peak_rss_kib < 250 * 1024, f"peak RSS {bridge.peak_rss_kib // 1024} MiB"
    if policy == "stop-reading":
        # What was read is all delivered; what the vendor sent while the connections were closed (and
        # the frames unread at the close) falls inside the published spool_full gaps.
        gaps = [
            decode(apache_schema("gap"), record.value)
            for record in await consume_all(own_broker.bootstrap, names["gap"])
        ]
        full = [(gap["start"], gap["end"]) for gap in gaps if gap["cause"] == "spool_full" and gap["resolved"]]
        assert full, gaps
        for symbol, times in missing_times(sent, delivered).items():
            for t in times:
                instant = EPOCH + timedelta(milliseconds=t)
                assert any(start - timedelta(seconds=1) <= instant <= end for start, end in full), (
                    symbol,
                    instant,
                    full,
                )
    else:
        assert result.missing > 0
        assert result.missing <= dropped + 200, (result, dropped)


async def _producing(
    tmp_path: Path,
    sim: Simulator,
    broker: LocalBroker,
    names: dict[str, str],
    bridges: list[BridgeProcess],
    produced: int,
    spool: dict[str, Any] | None = None,
) -> BridgeProcess:
    """A bridge started on ``sim`` and ``broker`` (stopped by the fixture), once it has produced ``produced`` trades."""
    if spool is None:
        bridge = BridgeProcess(tmp_path, sim.url, broker.bootstrap, names)
    else:
        bridge = BridgeProcess(tmp_path, sim.url, broker.bootstrap, names, spool=spool)
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_for("infoway_bridge_records_produced_total", produced, topic=names["trade"])
    return bridge


async def _drained_and_compared(bridge: BridgeProcess, tmp_path: Path, broker: LocalBroker, topic: str) -> Comparison:
    """Let the running bridge empty its spool and stop (exit 0), then compare ``topic`` with what was sent."""
    await _drain(bridge)
    assert await bridge.stop() == 0
    return compare(sent_trades(tmp_path / "sent.jsonl"), await trades_in_kafka(broker.bootstrap, topic))


async def _drain(bridge: BridgeProcess) -> None:
    """Wait until the running bridge's spool is empty (everything it read is in Kafka)."""
    await bridge.started()
    deadline = asyncio.get_running_loop().time() + 120
    while await asyncio.to_thread(bridge.metric, "infoway_bridge_spool_records") > 0:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the spool did not drain:\n{bridge.log()[-3000:]}")
        bridge.sample_memory()
        await asyncio.sleep(0.3)
