"""The spool on real files in a temporary directory: order, replay after a restart, damage, limits, locking."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bridge.config_spool import SpoolConfig, WhenFull
from bridge.errors import ConfigError
from bridge.metrics import BridgeMetrics
from bridge.spool import Spool
from bridge.spool_segments import Recovered
from tests.test_spool_format import message


def settings(directory: Path | None, **overrides: Any) -> SpoolConfig:
    """Small segments so a few hundred records span several files."""
    return SpoolConfig(**{"dir": directory, "segment_bytes": 64 * 1024, "max_bytes": 1 << 20, **overrides})


@asynccontextmanager
async def opened(config: SpoolConfig, acknowledged: int | None = None) -> AsyncIterator[tuple[Spool, Recovered]]:
    """A spool opened and resumed (after ``acknowledged``, else after what it recorded itself), closed at the end."""
    spool = Spool(config, BridgeMetrics(CollectorRegistry()))
    recovered = spool.open()
    spool.resume(recovered.acknowledged if acknowledged is None else acknowledged)
    try:
        yield spool, recovered
    finally:
        await spool.close()


async def read_all(spool: Spool) -> list[int]:
    """The offsets of everything readable now, in order (the messages' values are checked to match)."""
    found: list[int] = []
    while batch := await spool.read(1000, 0):
        for offset, held in batch:
            assert held.value.endswith(str(offset).encode()), (offset, held.value)
            found.append(offset)
    return found


def segment_files(directory: Path) -> list[Path]:
    """The segment files in a spool directory, oldest first."""
    return sorted(directory.glob("*.seg"))


def fill(spool: Spool, count: int, size: int = 100) -> None:
    """Append ``count`` messages whose value ends with their offset."""
    for _ in range(count):
        spool.append(message(spool.next_offset, bytes(size)))


def sample(spool: Spool, name: str, **labels: str) -> float:
    """A spool metric's value (0 when never set)."""
    value = spool._metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_records_come_back_in_order_from_memory_and_from_disk(tmp_path: Path) -> None:
    """With a memory window smaller than the backlog, the oldest records are read from the segment files, in order."""
    async with opened(settings(tmp_path, memory_bytes=1 << 20)) as (spool, _):
        fill(spool, 3000, size=500)  # about 1.6 MB: more than the memory window holds
        assert len(segment_files(tmp_path)) > 5
        assert await read_all(spool) == list(range(1, 3001))


async def test_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    """Once Kafka has everything in a segment it is deleted; the active one stays."""
    async with opened(settings(tmp_path)) as (spool, _):
        fill(spool, 1000, size=500)
        before = len(segment_files(tmp_path))
        await read_all(spool)
        spool.acknowledge(1000)
        assert spool.pending == 0
        assert before > 3
        assert len(segment_files(tmp_path)) == 1


async def test_a_restart_replays_only_what_was_not_acknowledged(tmp_path: Path) -> None:
    """After a clean stop the next run reads from just after the recorded acknowledged offset, then new records."""
    async with opened(settings(tmp_path)) as (spool, _):
        fill(spool, 500)
        spool.acknowledge(200)
    async with opened(settings(tmp_path)) as (spool, recovered):
        assert (recovered.records, recovered.acknowledged, recovered.torn, recovered.damaged) == (500, 200, None, 0)
        assert spool.pending == 300
        fill(spool, 10)
        assert await read_all(spool) == list(range(201, 511))


async def test_a_position_from_kafka_beyond_the_files_keeps_offsets_unique(tmp_path: Path) -> None:
    """Kafka may hold more than the files (records delivered, then lost unsynced): new offsets start after both."""
    async with opened(settings(tmp_path)) as (spool, _):
        fill(spool, 50)
    async with opened(settings(tmp_path), acknowledged=80) as (spool, _):
        assert spool.next_offset == 81
        assert spool.pending == 0


async def test_a_torn_tail_and_a_flipped_byte_cost_one_record_each(tmp_path: Path) -> None:
    """A torn last write is cut off and one flipped byte skipped; every other record is replayed, both reported."""
    async with opened(settings(tmp_path)) as (spool, _):
        fill(spool, 900, size=200)
    segments = segment_files(tmp_path)
    assert len(segments) >= 3
    middle = segments[len(segments) // 2]
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    middle.write_bytes(bytes(data))
    last = segments[-1]
    last.write_bytes(last.read_bytes()[:-5])
    async with opened(settings(tmp_path)) as (spool, recovered):
        replayed = await read_all(spool)
        assert recovered.damaged == 1
        assert recovered.torn is not None
        assert recovered.torn.startswith(last.name)
        assert len(replayed) == 898
        assert replayed[-1] == 899
        assert set(range(1, 900)) - set(replayed) == {next(n for n in range(1, 900) if n not in replayed)}
        assert sample(spool, "infoway_bridge_spool_damaged_records_total", kind="torn") == 1
        assert sample(spool, "infoway_bridge_spool_damaged_records_total", kind="damaged") == 1


async def test_stop_reading_when_full_until_there_is_room(tmp_path: Path) -> None:
    """At max_bytes the spool stops accepting; acknowledgements that free 10 % let the feed read again."""
    async with opened(settings(tmp_path, max_bytes=1 << 20)) as (spool, _):
        while spool.accepting:
            fill(spool, 100, size=500)
        assert spool.size_bytes >= 1 << 20
        room = spool.wait_for_room()
        await read_all(spool)
        spool.acknowledge(spool.next_offset - 1)
        assert spool.accepting
        await room


async def test_drop_oldest_keeps_the_spool_bounded_and_counts_what_it_dropped(tmp_path: Path) -> None:
    """With drop-oldest the spool never passes max_bytes, keeps accepting, and counts the records it deleted."""
    config = settings(tmp_path, max_bytes=1 << 20, when_full=WhenFull.DROP_OLDEST)
    async with opened(config) as (spool, _):
        fill(spool, 8000, size=500)
        assert spool.accepting
        assert spool.size_bytes < 1 << 20
        dropped = sample(spool, "infoway_bridge_spool_dropped_records_total", reason="when_full")
        kept = await read_all(spool)
        assert dropped > 0
        assert kept == list(range(8001 - len(kept), 8001)), "what is left is the newest, in order"
        assert dropped + len(kept) == 8000


async def test_a_memory_spool_is_bounded_too() -> None:
    """Without a directory the memory window is the spool: full at max_bytes under stop-reading."""
    async with opened(settings(None, max_bytes=1 << 20)) as (spool, _):
        while spool.accepting:
            fill(spool, 100, size=500)
        assert spool.size_bytes < 2 << 20
        assert await read_all(spool) == list(range(1, spool.next_offset))


async def test_a_second_process_cannot_use_the_same_directory(tmp_path: Path) -> None:
    """The directory is locked: another spool on it fails at start, naming spool.dir and the holder's pid."""
    async with opened(settings(tmp_path)):
        other = Spool(settings(tmp_path), BridgeMetrics(CollectorRegistry()))
        with pytest.raises(
            ConfigError, match=rf"spool.dir: {tmp_path} is in use by another bridge process \(pid {os.getpid()}\)"
        ):
            other.open()


def test_an_unwritable_directory_is_a_clear_error_at_start(tmp_path: Path) -> None:
    """A spool.dir that cannot be created is refused at start with the key, the path and the reason."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spool = Spool(settings(blocker / "spool"), BridgeMetrics(CollectorRegistry()))
    with pytest.raises(ConfigError, match=r"spool.dir: cannot use .*file/spool"):
        spool.open()


async def test_oldest_age_follows_the_oldest_unacknowledged_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The age gauge measures from the oldest record Kafka does not have, and is 0 when there is none."""
    clock = [1000.0]
    monkeypatch.setattr("bridge.spool.time.monotonic", lambda: clock[0])
    async with opened(settings(tmp_path)) as (spool, _):
        fill(spool, 10)
        clock[0] += 5
        fill(spool, 10)
        clock[0] += 5
        assert spool.oldest_age() == 10
        spool.acknowledge(10)
        assert spool.oldest_age() == 5
        spool.acknowledge(20)
        assert spool.oldest_age() == 0
