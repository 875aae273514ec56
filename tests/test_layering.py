"""Who may import whom: the feed is a thin I/O shell that knows nothing of Kafka (ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

KAFKA_SIDE = (
    "bridge.serialize",
    "bridge.sink",
    "bridge.topics",
    "bridge.pipeline",
    "bridge.registry",
    "aiokafka",
    "fastavro",
)


def loaded_by(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` importing ``module`` loads, in a fresh interpreter (so transitive imports count)."""
    probe = f"import json, sys, {module}; print(json.dumps(sorted(m for m in {candidates!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def test_the_feed_knows_nothing_of_kafka() -> None:
    """Importing bridge.feed loads no serializer, sink, topic admin, registry, aiokafka or fastavro."""
    assert loaded_by("bridge.feed", KAFKA_SIDE) == []


@pytest.mark.parametrize(
    "module",
    [
        "bridge.protocol",
        "bridge.protocol.session",
        "bridge.protocol.gaps",
        "bridge.protocol.shards",
        "bridge.protocol.handoff",
    ],
)
def test_the_protocol_core_does_no_io(module: str) -> None:
    """The protocol core loads no I/O library and nothing of the Kafka side."""
    assert loaded_by(module, ("asyncio", "websockets", "socket", *KAFKA_SIDE)) == []
