"""Replicas share the codes through Kafka's group protocol: real processes, a real broker, the simulator.

The simulator's ``/sim/stats`` view says which codes each open connection subscribes; Kafka,
read with ``isolation.level=read_committed``, says what was delivered; the simulator's record of
every trade it sent is the oracle (``tests/chaos/support.py``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.protocol.shards import shard_of
from bridge.records import EPOCH
from bridge.simulator import Simulator
from tests.chaos.support import (
    BridgeProcess,
    compare,
    missing_times,
    recording,
    sent_trades,
    trades_in_kafka,
)
from tests.conftest import LocalBroker
from tests.harness import topics
from tests.kafka_tools import apache_schema, consume_all, decode

pytestmark = pytest.mark.kafka

CODES = [f"S{i:02d}USDT" for i in range(60)]
SHARDS = 12
SESSION_TIMEOUT = 6.0


def replica(
    tmp_path: Path, name: str, sim: Simulator, bootstrap: str, names: dict[str, str], **sharding: Any
) -> BridgeProcess:
    """One replica named ``name`` (its own directory and spool, kept across runs) of a deployment over the 60 codes."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return BridgeProcess(
        directory, sim.url, bootstrap, names,
        source={"subscriptions": [{"business": "crypto", "codes": CODES}]},
        delivery={"transactional_id": f"scale.{tmp_path.name}"},
        sharding={"shards": SHARDS, "instance": name, "group": f"scale.{tmp_path.name}",
                  "control_topic": f"{names['trade']}.shards", "session_timeout_seconds": SESSION_TIMEOUT,
                  **sharding},
    )  # fmt: skip


def subscribed(sim: Simulator) -> list[str]:
    """Every trade subscription of every open connection, one entry per (connection, code)."""
    return [code for connection in sim.snapshot()["connections"] for code in connection["subscriptions"]["trade"]]


async def until_covered(sim: Simulator, timeout: float) -> float:
    """Wait until the open connections subscribe each code exactly once; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        codes = subscribed(sim)
        if sorted(codes) == CODES:
            return time.monotonic()
        if time.monotonic() > deadline:
            doubled = sorted({code for code in codes if codes.count(code) > 1})
            raise AssertionError(f"after {timeout:g}s: missing {sorted(set(CODES) - set(codes))}, doubled {doubled}")
        await asyncio.sleep(0.1)


async def until_shared(group: list[BridgeProcess], timeout: float) -> list[set[int]]:
    """Wait until every replica of ``group`` owns some shards and together they own each shard once."""
    deadline = time.monotonic() + timeout
    while True:
        shares = [await asyncio.to_thread(owned, bridge) for bridge in group]
        owners = sorted(shard for share in shares for shard in share)
        if all(shares) and owners == list(range(SHARDS)):
            return shares
        assert time.monotonic() < deadline, f"after {timeout:g}s the shards are owned as {shares}"
        await asyncio.sleep(0.2)


def owned(bridge: BridgeProcess) -> set[int]:
    """The shards a replica says (on /metrics) it owns."""
    return {shard for shard in range(SHARDS) if bridge.metric("infoway_bridge_shard_owned", shard=f"{shard:02d}")}


async def test_three_replicas_share_the_codes_a_killed_ones_move_and_a_newcomer_takes_its_share(
    tmp_path: Path, kafka_bootstrap: str, bridges: list[BridgeProcess]
) -> None:
    """Three replicas subscribe each of 60 codes exactly once; kill -9 one and the others take its codes within
    the session timeout plus a subscribe round trip, publishing gap records for exactly its codes over the
    hand-off; a replica joining the survivors takes its share of the shards; nothing is duplicated under
    read_committed."""
    names = {**topics("scale"), "gap": f"scale.{tmp_path.name}.gaps"}
    options = recording(tmp_path, 600)
    async with Simulator(options) as sim:
        group = [replica(tmp_path, f"bridge-{i}", sim, kafka_bootstrap, names, mode="group") for i in range(3)]
        bridges.extend(group)
        for bridge in group:
            bridge.start()
        for bridge in group:
            await bridge.started()
        shares = await until_shared(group, timeout=60)
        await until_covered(sim, timeout=30)

        victim, victims_shards = group[1], shares[1]
        await victim.stop(signal.SIGKILL)
        killed, killed_at = time.monotonic(), datetime.now(UTC)
        await asyncio.sleep(0.5)
        covered = await until_covered(sim, timeout=SESSION_TIMEOUT + 30)
        handoff = covered - killed
        print(f"kill -9: codes subscribed again after {handoff:.1f}s (session timeout {SESSION_TIMEOUT:g}s)")
        assert handoff < SESSION_TIMEOUT + 10

        fourth = replica(tmp_path, "bridge-3", sim, kafka_bootstrap, names, mode="group")
        bridges.append(fourth)
        fourth.start()
        await fourth.started()
        moved = (await until_shared([group[0], group[2], fourth], timeout=60))[2]
        await until_covered(sim, timeout=30)
        await asyncio.sleep(3)  # records flow on every shard's new connections
    for bridge in (group[0], group[2], fourth):
        assert await bridge.stop() == 0
    print(f"a fourth replica took {len(moved)} of {SHARDS} shards: {sorted(moved)}")
    # The newcomer joins the two survivors: three live replicas, so about a third of the 12 shards move to it.
    assert 2 <= len(moved) <= 4, moved

    sent = sent_trades(tmp_path / "sent.jsonl")
    delivered = await trades_in_kafka(kafka_bootstrap, names["trade"])
    result = compare(sent, delivered)
    assert (result.duplicates, result.out_of_order) == (0, 0), result

    schema = apache_schema("gap")
    gaps = [decode(schema, record.value) for record in await consume_all(kafka_bootstrap, names["gap"])]
    moved_gaps = [gap for gap in gaps if gap["cause"] == "shard_moved"]
    victims_codes = {code for code in CODES if shard_of(code, SHARDS) in victims_shards}
    # The kill's gaps span the kill (gaps of the start-up's hand-offs ended before it); they start at the
    # victim's last heartbeat (at most a second before the kill) and end when the new owner's data flows:
    # the session timeout and a subscribe round trip later.
    kill_gaps = [gap for gap in moved_gaps if gap["start"] <= killed_at < gap["end"]]
    assert {code for gap in kill_gaps for code in gap["codes"]} == victims_codes
    for gap in kill_gaps:
        assert killed_at - timedelta(seconds=2) <= gap["start"], gap
        assert SESSION_TIMEOUT - 1 < (gap["end"] - gap["start"]).total_seconds() < handoff + 2, gap
    # Every trade missing from Kafka lies inside a hand-off gap published for its code (1 s slack: the
    # gap of a killed owner starts at its last heartbeat, the moment it was last known alive).
    outside = {
        code: [t for t in times if not any(_millis(g["start"]) - 1000 <= t <= _millis(g["end"]) for g in moved_gaps
                                           if code in g["codes"])]
        for code, times in missing_times(sent, delivered).items()
    }  # fmt: skip
    assert not {code: times for code, times in outside.items() if times}, "trades lost outside every gap"


def _millis(instant: Any) -> int:
    return int((instant - EPOCH) // timedelta(milliseconds=1))


async def test_static_replicas_cover_the_codes_once_and_a_spool_of_shards_owned_elsewhere_is_delivered(
    tmp_path: Path, own_broker: LocalBroker, bridges: list[BridgeProcess]
) -> None:
    """One static replica owning every shard spools through a broker outage and stops; it comes back as replica
    0 of 2 beside replica 1: each code is subscribed exactly once, and the records its spool held of replica 1's
    shards are delivered too, under a drain id of their own: every trade once, late but not lost."""
    names = topics("static")
    options = recording(tmp_path, 500)
    async with Simulator(options) as sim:
        alone = replica(tmp_path, "bridge-0", sim, own_broker.bootstrap, names, mode="static", count=1)
        bridges.append(alone)
        alone.start()
        await alone.started()
        await until_covered(sim, timeout=30)
        await alone.wait_for("infoway_bridge_records_produced_total", 1000, topic=names["trade"])
        await asyncio.to_thread(own_broker.stop)
        await alone.wait_for("infoway_bridge_spool_records", 1500)
        assert await alone.stop() == 0
        assert "stay in the spool" in alone.log()
        await asyncio.to_thread(own_broker.start, keep_data=True)

        # The same pod and volume, now one of two; its index comes from its name.
        first = replica(tmp_path, "bridge-0", sim, own_broker.bootstrap, names, mode="static", count=2)
        second = replica(tmp_path, "bridge-1", sim, own_broker.bootstrap, names, mode="static", count=2)
        bridges.extend([first, second])
        for bridge in (first, second):
            bridge.start()
        for bridge in (first, second):
            await bridge.started()
        await until_covered(sim, timeout=30)
        shares = [await asyncio.to_thread(owned, bridge) for bridge in (first, second)]
        assert shares == [set(range(0, SHARDS, 2)), set(range(1, SHARDS, 2))]
        await first.wait_down_to("infoway_bridge_spool_records", 0, timeout=60)
        await asyncio.sleep(2)
    for bridge in (first, second):
        assert await bridge.stop() == 0
    assert "which another replica owns now; delivering them as" in first.log()
    sent = sent_trades(tmp_path / "sent.jsonl")
    delivered = await trades_in_kafka(own_broker.bootstrap, names["trade"])
    result = compare(sent, delivered)
    assert (result.missing, result.duplicates) == (0, 0), result
    # Drained records of replica 1's shards land after its newer ones; replica 0's own shards stay in order.
    even = {code: times for code, times in delivered.items() if shard_of(code, SHARDS) % 2 == 0}
    assert compare({code: sent[code] for code in even}, even).out_of_order == 0
