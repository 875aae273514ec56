"""The REST decisions are pure: envelope, paging, budget and the backfill report load no I/O library."""

from __future__ import annotations

import pytest

from tests.test_layering import KAFKA_SIDE, loaded_by

IO = ("asyncio", "httpx", "websockets", "socket", *KAFKA_SIDE)


@pytest.mark.parametrize(
    "module", ["bridge.rest.envelope", "bridge.rest.paging", "bridge.rest.budget", "bridge.backfill_report"]
)
def test_rest_decisions_do_no_io(module: str) -> None:
    """Importing a pure REST module loads no asyncio, httpx, websockets, socket or anything of the Kafka side."""
    assert loaded_by(module, IO) == []
