"""The reconnect snapshot's choices on literal REST books: null sides are empty, books older than a push are dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bridge.protocol.events import Record
from bridge.protocol.requests import plan_connections
from bridge.records import Cause, DepthRecord, GapRecord, PriceLevel, Provenance, RecordSource, Stream
from bridge.rest.budget import RequestBudget
from bridge.rest.client import RestClient
from bridge.snapshot import DepthSnapshots
from tests.outlets import Collected

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
GAP = GapRecord("crypto", "crypto-0", ("BTCUSDT",), (Stream.DEPTH,), T0, T0, Cause.CLOSED, None, True, "a", "c#2@r")


async def test_null_sides_are_empty_and_older_books_are_dropped() -> None:
    """A book with a null side is published with that side empty; one not newer than a pushed book is dropped."""
    collected = Collected()
    client = RestClient("http://127.0.0.1:9", "k", RequestBudget(1, 1, 0.0))
    snapshots = DepthSnapshots(collected, client, frozenset({("crypto", "BTCUSDT")}))
    pushed = DepthRecord(
        "BTCUSDT", T0, (PriceLevel(Decimal(1), Decimal(1)),), (), Provenance("crypto", "crypto-0#1@r", 1, T0)
    )
    snapshots.track(plan_connections("crypto", ["BTCUSDT"], [Stream.DEPTH]))
    snapshots.emit(Record(pushed, ""))
    tracked_plan, _ = snapshots._codes["crypto-0"]
    newer = int(T0.timestamp() * 1000) + 5
    snapshots._publish(tracked_plan, GAP, {"s": "BTCUSDT", "t": newer, "a": None, "b": [["1.5"], ["2"]]})
    snapshots._publish(tracked_plan, GAP, {"s": "BTCUSDT", "t": newer - 10, "a": [["2"], ["1"]], "b": None})
    records = [o.record for o in collected.outcomes if isinstance(o, Record) and isinstance(o.record, DepthRecord)]
    rest = [record for record in records if record.source is RecordSource.REST]
    assert len(rest) == 1
    assert (rest[0].asks, rest[0].bids[0].price) == ((), Decimal("1.5"))
    assert rest[0].provenance.connection_id == "c#2@r/snapshot"
    assert snapshots.dropped_older == 1
    await client.aclose()
