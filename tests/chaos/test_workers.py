"""``run --workers N``: N processes share one host's shards behind one metrics endpoint and one shutdown."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from pathlib import Path

import pytest

from bridge.config import parse_config
from bridge.protocol.shards import static_shards
from bridge.simulator import Simulator
from bridge.workers import worker_config
from tests.chaos.support import BridgeProcess, compare, recording, sent_trades, trades_in_kafka
from tests.harness import topics

CODES = [f"W{i:02d}USDT" for i in range(24)]


def config_with(sharding: dict[str, object]) -> dict[str, object]:
    """A minimal configuration document with this ``sharding`` section."""
    subscriptions = [{"business": "crypto", "codes": CODES}]
    return {"source": {"api_key": "k", "subscriptions": subscriptions}, "sharding": sharding}


@pytest.mark.parametrize(
    ("sharding", "workers", "wanted"),
    [
        ({}, 3, set(range(12))),
        ({"mode": "static", "count": 2, "index": 1}, 3, set(static_shards(1, 2, 12))),
    ],
)
def test_the_workers_split_what_the_replica_owns_with_no_overlap(
    sharding: dict[str, object], workers: int, wanted: set[int]
) -> None:
    """Unsharded, the workers split all 12 shards; replica 1 of 2 splits its own six among its workers."""
    config = parse_config(config_with({"instance": "pod-1", **sharding}), {})
    owned = []
    for index in range(workers):
        share = worker_config(config, index, workers, 9000 + index).sharding
        assert share.count is not None
        owned.append(set(static_shards(share.static_index, share.count, share.shards)))
        assert share.instance == f"pod-1.w{index}"
    assert sorted(shard for shards in owned for shard in shards) == sorted(wanted)
    for index, mine in enumerate(owned):
        share = worker_config(config, index, workers, 9000 + index).sharding
        # The siblings' shards share spool.dir with this worker's: never taken for a replica's leftovers.
        assert set(share.colocated) == wanted - mine, index


def test_in_group_mode_each_worker_is_a_member_and_the_ids_stay_the_replicas() -> None:
    """Group mode: each worker joins under its own member name; every worker derives the same transactional stem."""
    config = parse_config(config_with({"mode": "group", "instance": "pod-1", "group": "desk"}), {})
    first, second = (worker_config(config, index, 2, 9000 + index) for index in range(2))
    assert (first.sharding.instance, second.sharding.instance) == ("pod-1.w0", "pod-1.w1")
    assert first.delivery.transactional_id == second.delivery.transactional_id == "infoway-bridge.desk"
    assert (first.metrics.host, first.metrics.port) == ("127.0.0.1", 9000)


def scrape(port: int, path: str) -> tuple[int, str]:
    """GET the parent's endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.kafka
async def test_two_workers_share_the_codes_behind_one_endpoint_and_stop_together(
    tmp_path: Path, kafka_bootstrap: str, bridges: list[BridgeProcess]
) -> None:
    """``--workers 2``: each code subscribed once over both workers, one /metrics with a worker label, /readyz
    ready when both are, and one SIGTERM stops both with status 0 and every trade in Kafka once."""
    names = topics("workers")
    options = recording(tmp_path, 400)
    async with Simulator(options) as sim:
        bridge = BridgeProcess(
            tmp_path, sim.url, kafka_bootstrap, names, arguments=("--workers", "2"),
            source={"subscriptions": [{"business": "crypto", "codes": CODES}]},
        )  # fmt: skip
        bridges.append(bridge)
        bridge.start()
        await bridge.wait_for("infoway_bridge_records_produced_total", 500, topic=names["trade"])
        codes = [c for connection in sim.snapshot()["connections"] for c in connection["subscriptions"]["trade"]]
        assert sorted(codes) == CODES
        status, text = await asyncio.to_thread(scrape, bridge.metrics_port, "/metrics")
        assert status == 200
        assert text.count("# TYPE infoway_bridge_records_produced_total counter") == 1, "families merged"
        assert bridge.metric("infoway_bridge_shards_owned", worker="0") == 6
        assert bridge.metric("infoway_bridge_shards_owned", worker="1") == 6
        ready, why = await asyncio.to_thread(scrape, bridge.metrics_port, "/readyz")
        assert ready == 200, why
        assert "worker 0:" in why
        assert "worker 1:" in why
        await asyncio.sleep(1)
    assert await bridge.stop(signal.SIGTERM) == 0
    assert sim.stats.cut_at_stop == 0
    # No worker took a sibling's spool for an orphan to drain (in a shared spool.dir, as happened once).
    assert "Traceback" not in bridge.log()
    assert "another replica owns now" not in bridge.log()
    result = compare(sent_trades(tmp_path / "sent.jsonl"), await trades_in_kafka(kafka_bootstrap, names["trade"]))
    assert (result.missing, result.duplicates, result.out_of_order) == (0, 0, 0), result
