"""A REST book snapshot after every reconnect, for depth subscriptions with ``snapshot_on_reconnect``.

:class:`DepthSnapshots` is an outlet in the chain before the publisher. It passes everything on,
remembers the newest WebSocket book time per connection and symbol, and when a connection's gap
closes (it reconnected) it asks ``GET /{business}/batch_depth/{codes}`` once, 100 codes a request,
and publishes each book as a depth record with ``source`` REST, so a consumer has a fresh book
before (or about when) the first push arrives. REST books have no sequence number: a book is
dropped when the WebSocket already delivered one of that symbol at the same or a later ``t``
(``docs/protocol/INFOWAY-REST.md``, "Snapshot endpoints"). A side the vendor sends as ``null`` is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

import orjson

from bridge.errors import MalformedPayload, RestError
from bridge.outlet import ForwardingOutlet, Outlet
from bridge.protocol.events import DataOutcome, GapClosed, Record
from bridge.protocol.normalize import normalize_depth
from bridge.protocol.requests import ConnectionPlan
from bridge.records import DepthRecord, GapRecord, Provenance, RecordSource, Stream
from bridge.rest.client import RestClient
from bridge.rest.paging import MAX_CODES
from bridge.timing import Clock

log = logging.getLogger(__name__)

_EMPTY_SIDE: list[list[str]] = [[], []]


class DepthSnapshots(ForwardingOutlet):
    """The outlet that adds a REST book snapshot after each reconnect (see the module docstring).

    Args:
        outlet: where everything goes next.
        client: the REST client (its budget shared with the backfill).
        wanted: ``(business, code)`` pairs whose subscriptions ask for a snapshot.
        clock: wall time for the records' ``received_time``.
    """

    def __init__(
        self, outlet: Outlet, client: RestClient, wanted: frozenset[tuple[str, str]], clock: Clock | None = None
    ) -> None:
        self._outlet = outlet
        self._client = client
        self._wanted = wanted
        self._clock = clock or Clock()
        self._codes: dict[str, tuple[ConnectionPlan, tuple[str, ...]]] = {}
        self._last_book: dict[tuple[str, str], datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sequence: dict[str, int] = {}
        self.published = 0
        self.dropped_older = 0

    def track(self, plans: Iterable[ConnectionPlan]) -> None:
        """Snapshot the depth codes of these connections that ask for it."""
        for plan in plans:
            depth = [code for sub in plan.subscriptions if sub.stream is Stream.DEPTH for code in sub.codes]
            codes = tuple(code for code in dict.fromkeys(depth) if (plan.business, code) in self._wanted)
            if codes:
                self._codes[plan.name] = (plan, codes)

    def emit(self, outcome: DataOutcome) -> None:
        """Pass one outcome on; a resolved gap of a tracked connection starts its snapshot. Never waits."""
        if isinstance(outcome, Record) and isinstance(outcome.record, DepthRecord):
            record = outcome.record
            key = (record.provenance.connection_id.split("#", 1)[0], record.symbol)
            if key[0] in self._codes and (key not in self._last_book or record.event_time > self._last_book[key]):
                self._last_book[key] = record.event_time
        self._outlet.emit(outcome)
        if isinstance(outcome, GapClosed):
            gap = outcome.gap
            tracked = self._codes.get(gap.connection)
            if tracked is not None and gap.resolved and gap.backfill is None:
                task = asyncio.create_task(self._snapshot(*tracked, gap), name=f"snapshot-{gap.connection}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _snapshot(self, plan: ConnectionPlan, codes: tuple[str, ...], gap: GapRecord) -> None:
        """One batch_depth per 100 codes; books older than a pushed one are dropped. Safe to cancel."""
        for first in range(0, len(codes), MAX_CODES):
            try:
                data = await self._client.depth(plan.business, codes[first : first + MAX_CODES])
            except RestError as exc:
                log.warning("depth snapshot of %s after the reconnect failed: %s", plan.name, exc)
                return
            for entry in data if isinstance(data, list) else []:
                if isinstance(entry, Mapping):
                    self._publish(plan, gap, entry)

    def _publish(self, plan: ConnectionPlan, gap: GapRecord, entry: Mapping[str, object]) -> None:
        sequence = self._sequence[plan.name] = self._sequence.get(plan.name, 0) + 1
        provenance = Provenance(plan.business, f"{gap.next_connection_id}/snapshot", sequence, self._clock.wall())
        payload = {**entry, "a": entry.get("a") or _EMPTY_SIDE, "b": entry.get("b") or _EMPTY_SIDE}
        try:
            record = normalize_depth(payload, provenance)
        except MalformedPayload as exc:
            log.warning("depth snapshot of %s: a book skipped: %s", plan.name, exc)
            return
        pushed = self._last_book.get((plan.name, record.symbol))
        if pushed is not None and pushed >= record.event_time:
            self.dropped_older += 1
            return
        self._outlet.emit(Record(dataclasses.replace(record, source=RecordSource.REST), orjson.dumps(entry).decode()))
        self.published += 1

    async def close(self) -> None:
        """Cancel snapshots in flight and wait for them."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
