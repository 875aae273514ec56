"""What every chaos test gets: the bridge processes it starts are killed when it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.support import BridgeProcess


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    """Bridge processes a test starts; none outlives it."""
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        bridge.kill_if_running()
