"""Running the real bridge in-process against the simulator and a real broker, for I/O tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from bridge.app import Bridge
from bridge.config import BridgeConfig, parse_config

API_KEY = "harness-secret-key-9f3a"


def topics(prefix: str = "t") -> dict[str, str]:
    """Fresh topic names, so tests sharing one broker never read each other's records."""
    run = f"{prefix}.{uuid.uuid4().hex[:8]}"
    return {"trade": f"{run}.trades", "depth": f"{run}.depth", "kline": f"{run}.kline", "dead_letter": f"{run}.dlq"}


def bridge_config(
    url: str,
    bootstrap: str,
    subscriptions: list[dict[str, Any]],
    *,
    source: Mapping[str, Any] | None = None,
    kafka: Mapping[str, Any] | None = None,
) -> BridgeConfig:
    """A configuration for tests: fast reconnects, metrics on a free port, fresh topics."""
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
    }
    return parse_config(document, {})


class RunningBridge:
    """The bridge's ``run`` as a task of the test's event loop; ``stop()`` returns its exit code."""

    def __init__(self, config: BridgeConfig) -> None:
        self.bridge = Bridge(config)
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
        """Records Kafka acknowledged so far (0 until the sink exists)."""
        sink = self.bridge.sink
        return 0 if sink is None else sink.delivered

    @property
    def pending(self) -> int:
        """Records held by the sink, not yet acknowledged (0 until the sink exists)."""
        sink = self.bridge.sink
        return 0 if sink is None else sink.pending

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
