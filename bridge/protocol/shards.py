"""Codes into shards, and which shards a replica owns, with no I/O.

A code's shard is a stable hash of the code alone (CRC-32 of its UTF-8, modulo the shard count),
so one code is always in one shard, whatever else is configured: adding or removing a code moves
only that code. A shard's codes of one business are planned into as few connections as the
vendor's per-connection cap allows, named ``<business>.s<shard>-<index>`` so every replica names a
shard's connections the same way.

Ownership is decided elsewhere (Kafka's group coordinator in group mode, see
:mod:`bridge.ownership`); static ownership is pure and lives here: a replica owns the shards whose
number modulo the replica count equals its index, and the index may come from a StatefulSet pod
name such as ``bridge-2``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bridge.protocol.codes import KlineInterval
from bridge.protocol.requests import ConnectionPlan, plan_connections
from bridge.records import Stream

_ORDINAL = re.compile(r"-(\d+)$")


def shard_of(code: str, shards: int) -> int:
    """The shard of ``code``: CRC-32 of its UTF-8 modulo ``shards`` (stable across processes and versions)."""
    return zlib.crc32(code.encode("utf-8")) % shards


def shard_name(shard: int) -> str:
    """``shard-03``: the shard's spool directory, control-record key and transactional-id suffix."""
    return f"shard-{shard:02d}"


class EntryLike(Protocol):
    """What planning reads of a configured subscription entry."""

    @property
    def business(self) -> str: ...
    @property
    def codes(self) -> tuple[str, ...]: ...
    @property
    def streams(self) -> tuple[Stream, ...]: ...
    @property
    def kline_types(self) -> tuple[KlineInterval, ...]: ...


E = TypeVar("E", bound=EntryLike)


@dataclass(frozen=True, slots=True)
class Entry:
    """A subscription entry with nothing else (the configuration's entries carry more)."""

    business: str
    codes: tuple[str, ...]
    streams: tuple[Stream, ...]
    kline_types: tuple[KlineInterval, ...]


def plan_all(entries: Sequence[E], *, max_codes_per_connection: int) -> list[tuple[ConnectionPlan, E]]:
    """The connections of an unsharded replica: every code of each entry, named ``<business>-<i>``."""
    return _plan(entries, lambda code: True, "", max_codes_per_connection)


def plan_shard(
    shard: int, shards: int, entries: Sequence[E], *, max_codes_per_connection: int
) -> list[tuple[ConnectionPlan, E]]:
    """The connections of one shard: its codes of each entry, within the per-connection cap.

    Returns each plan with the entry it came from (its stale policy applies).
    """
    return _plan(entries, lambda code: shard_of(code, shards) == shard, f".s{shard:02d}", max_codes_per_connection)


def _plan(
    entries: Sequence[E], wanted: Callable[[str], bool], suffix: str, max_codes_per_connection: int
) -> list[tuple[ConnectionPlan, E]]:
    plans: list[tuple[ConnectionPlan, E]] = []
    counters: dict[str, int] = {}
    for entry in entries:
        codes = [code for code in entry.codes if wanted(code)]
        if not codes:
            continue
        first = counters.get(entry.business, 0)
        made = plan_connections(
            entry.business,
            codes,
            entry.streams,
            entry.kline_types if Stream.KLINE in entry.streams else (),
            max_codes_per_connection=max_codes_per_connection,
            first_index=first,
            prefix=f"{entry.business}{suffix}" if suffix else "",
        )
        counters[entry.business] = first + len(made)
        plans.extend((plan, entry) for plan in made)
    return plans


def codes_of(shard: int, shards: int, entries: Iterable[EntryLike]) -> dict[str, tuple[str, ...]]:
    """The codes of one shard, per business."""
    found: dict[str, dict[str, None]] = {}
    for entry in entries:
        for code in entry.codes:
            if shard_of(code, shards) == shard:
                found.setdefault(entry.business, {})[code] = None
    return {business: tuple(codes) for business, codes in found.items()}


def static_shards(index: int, count: int, shards: int) -> tuple[int, ...]:
    """The shards replica ``index`` of ``count`` owns: those whose number modulo ``count`` is ``index``."""
    return tuple(shard for shard in range(shards) if shard % count == index)


def ordinal_of(name: str) -> int | None:
    """The ordinal at the end of a StatefulSet pod name (``bridge-2`` is 2), or ``None``."""
    match = _ORDINAL.search(name)
    return int(match.group(1)) if match else None
