"""The replica against a real broker and simulator: a shard whose spool another process still holds."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from bridge.simulator import Simulator, SimulatorOptions
from bridge.spool_lock import SpoolInUse
from tests.harness import API_KEY, RunningBridge, bridge_config, eventually
from tests.test_spool_lock import HOLD


async def test_a_shard_whose_spool_a_sibling_still_holds_starts_once_the_sibling_lets_go(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A gained shard whose spool directory is locked (a sibling worker delivering its leftovers) waits, then runs.

    Before, the unit's start failed on the lock and took the bridge down with it. The holder here
    is a real second process, as a sibling worker is, and lets go after about a second.
    """
    caplog.set_level(logging.INFO, logger="bridge.replica")
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=200, depth_rate=0, kline_rate=0)) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"]}],
            sharding={"mode": "static", "shards": 1, "count": 1, "index": 0, "handoff_timeout_seconds": 20},
        )  # fmt: skip
        assert config.spool.dir is not None
        sibling = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD, str(config.spool.dir / "shard-00"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert sibling.stdin is not None
            assert sibling.stdout is not None
            assert (await sibling.stdout.readline()).strip() == b"held"
            async with RunningBridge(config) as running:
                await eventually(lambda: "waiting for it to let go" in caplog.text, what="the wait for the lock")
                await asyncio.sleep(1.0)
                assert running.delivered == 0, "nothing runs while the sibling holds the spool"
                assert not running.done
                sibling.stdin.close()  # the sibling's drain ends: it releases the lock
                await asyncio.wait_for(sibling.wait(), 10)
                await eventually(lambda: running.delivered > 0, timeout=30, what="records delivered once free")
                assert await running.stop() == 0
        finally:
            if sibling.returncode is None:
                sibling.kill()
                await sibling.wait()
    assert "Traceback" not in caplog.text


async def test_a_spool_locked_for_the_whole_handoff_timeout_fails_the_start_naming_the_wait(
    kafka_bootstrap: str,
) -> None:
    """A holder that never lets go (another bridge on the same directory) still fails the start, saying how long
    it waited and which setting bounds the wait."""
    async with Simulator(SimulatorOptions(port=0, api_key=API_KEY, rate=50, depth_rate=0, kline_rate=0)) as sim:
        config = bridge_config(
            sim.url, kafka_bootstrap, [{"business": "crypto", "codes": ["BTCUSDT"]}],
            sharding={"mode": "static", "shards": 1, "count": 1, "index": 0, "handoff_timeout_seconds": 1},
        )  # fmt: skip
        assert config.spool.dir is not None
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD, str(config.spool.dir / "shard-00"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            assert (await holder.stdout.readline()).strip() == b"held"
            with pytest.raises(SpoolInUse, match=r"in use by another bridge process .*waited 1s \(sharding"):
                async with RunningBridge(config) as running:
                    await running.exit_code(timeout=30)
        finally:
            holder.kill()
            await holder.wait()
