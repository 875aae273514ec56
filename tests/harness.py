"""Running the real bridge in-process against the simulator and a real broker, for I/O tests."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from prometheus_client import CollectorRegistry

from bridge.app import Bridge
from bridge.config import BridgeConfig, parse_config
from bridge.config_spool import DeliveryConfig, SpoolConfig
from bridge.metrics import BridgeMetrics
from bridge.records import Stream
from bridge.serialize import RecordSerializer, TopicMap
from bridge.sink import KafkaSink
from bridge.spool import Spool
from bridge.timing import Clock
from bridge.topics import ensure_topics

API_KEY = "harness-secret-key-9f3a"
SPOOLS = Path(tempfile.gettempdir()) / "infoway-test-spools"
"""Where tests' spool directories live; the session fixture in conftest removes it at the end."""


def topics(prefix: str = "t") -> dict[str, str]:
    """Fresh topic names, so tests sharing one broker never read each other's records."""
    run = f"{prefix}.{uuid.uuid4().hex[:8]}"
    return {
        "trade": f"{run}.trades",
        "depth": f"{run}.depth",
        "kline": f"{run}.kline",
        "dead_letter": f"{run}.dlq",
        "offsets": f"{run}.offsets",
    }


def fresh_spool() -> Path:
    """A spool directory no other test uses."""
    return SPOOLS / uuid.uuid4().hex[:12]


def unique_delivery() -> dict[str, Any]:
    """A ``delivery`` section with a transactional id of its own (tests share one broker)."""
    return {"transactional_id": f"test.{uuid.uuid4().hex[:12]}"}


def bridge_config(
    url: str,
    bootstrap: str,
    subscriptions: list[dict[str, Any]],
    *,
    source: Mapping[str, Any] | None = None,
    kafka: Mapping[str, Any] | None = None,
    spool: Mapping[str, Any] | None = None,
    delivery: Mapping[str, Any] | None = None,
    backfill: Mapping[str, Any] | None = None,
    sharding: Mapping[str, Any] | None = None,
) -> BridgeConfig:
    """A configuration for tests: fast reconnects, metrics on a free port, fresh topics, spool and transactional id."""
    document = {
        "source": {
            "url": url,
            "api_key": API_KEY,
            "subscriptions": subscriptions,
            "reconnect": {"initial_delay_seconds": 0.01, "max_delay_seconds": 0.05},
            **(source or {}),
        },
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics(), "linger_ms": 1, **(kafka or {})},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "spool": {"dir": str(fresh_spool()), **(spool or {})},
        "delivery": {**unique_delivery(), **(delivery or {})},
        "backfill": dict(backfill or {}),
        "sharding": dict(sharding or {}),
    }
    return parse_config(document, {})


class RunningBridge:
    """The bridge's ``run`` as a task of the test's event loop; ``stop()`` returns its exit code."""

    def __init__(self, config: BridgeConfig, clock: Clock | None = None) -> None:
        self.bridge = Bridge(config, clock=clock)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.bridge.run(self._stop, summary_interval=None))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def delivered(self) -> int:
        """Records Kafka acknowledged so far, over every unit (0 until one exists)."""
        replica = self.bridge.replica
        units = [] if replica is None else list(replica.units.values())
        return sum(unit.sink.delivered for unit in units if unit.sink is not None)

    @property
    def pending(self) -> int:
        """Records held by the sinks, not yet acknowledged (0 until one exists)."""
        replica = self.bridge.replica
        units = [] if replica is None else list(replica.units.values())
        return sum(unit.sink.pending for unit in units if unit.sink is not None)

    @property
    def done(self) -> bool:
        """Whether the bridge stopped by itself."""
        return self._task is not None and self._task.done()

    async def stop(self, timeout: float = 30.0) -> int:
        """Ask it to stop as SIGTERM would, and wait for its exit code."""
        assert self._task is not None
        self._stop.set()
        return await asyncio.wait_for(self._task, timeout)

    async def exit_code(self, timeout: float = 30.0) -> int:
        """Wait for the bridge to stop by itself and return its exit code."""
        assert self._task is not None
        return await asyncio.wait_for(asyncio.shield(self._task), timeout)


async def eventually(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, polling; fails the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


class SpooledSink:
    """A spool and a started sink delivering from it, for sink-level tests: ``put`` appends, ``close`` flushes.

    ``spool_dir`` None keeps the spool in memory. ``delivery`` overrides the ``delivery`` section
    (a unique transactional id is always set).
    """

    def __init__(self, kafka: Any, *, spool_dir: Path | None = None, delivery: Mapping[str, Any] | None = None) -> None:

        self.kafka = kafka
        self.metrics = BridgeMetrics(CollectorRegistry())
        self.spool = Spool(SpoolConfig(dir=spool_dir), self.metrics)
        recovered = self.spool.open()
        topics = TopicMap({s: kafka.topics.for_stream(s) for s in Stream}, kafka.topics.dead_letter)
        self.delivery = DeliveryConfig(**{**unique_delivery(), **(delivery or {})})
        assert self.delivery.transactional_id is not None
        self.sink = KafkaSink(
            kafka,
            self.delivery,
            self.spool,
            RecordSerializer(topics),
            self.metrics,
            transactional_id=self.delivery.transactional_id,
            spool_identity=recovered.identity,
        )
        self._recovered_acknowledged = recovered.acknowledged

    async def start(self) -> Self:
        """Create the topics, start the producer, resume the spool and begin delivering."""
        kafka = self.kafka
        offsets = (kafka.topics.offsets,) if self.sink.exactly_once else ()
        await ensure_topics(
            kafka, [kafka.topics.trade, kafka.topics.dead_letter, *offsets], compacted=dict.fromkeys(offsets, 1)
        )
        committed = await self.sink.start()
        self.spool.resume(self._recovered_acknowledged if committed is None else committed)
        self.sink.begin()
        return self

    def put(self, message: Any) -> None:
        """Append one message to the spool."""
        self.spool.append(message)

    @property
    def pending(self) -> int:
        """Records not yet acknowledged by Kafka."""
        return self.spool.pending

    async def close(self, timeout: float | None = None) -> int:
        """Flush within ``timeout`` and release the spool; returns the records left in it."""
        left = await self.sink.close(timeout)
        await self.spool.close()
        return left
