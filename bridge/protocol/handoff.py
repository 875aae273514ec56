"""Handing a shard from one replica to the next, as values and decisions with no I/O.

Kafka's group coordinator says who owns a shard; it does not say when the previous owner has
let go. So each owner writes *control records* to its shard's partition of the control topic:
``owned`` every heartbeat interval while it reads the shard (and through its flush),
``released`` once it has closed the shard's connections and flushed its spool. A new owner reads
the partition's last record and :func:`decide` tells it to start now (released, never owned,
or an owner whose heartbeats stopped: a dead replica) or to wait for the release (an owner still alive, finishing its
flush). Either way the interval between the previous owner's last data and the new owner's
first is published as a gap for the shard's codes (:class:`Inherited`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson


class ShardState(enum.StrEnum):
    """What an owner says of its shard."""

    OWNED = "owned"
    """It reads the shard now (a heartbeat)."""
    RELEASED = "released"
    """It closed the shard's connections and flushed its spool at ``at``: the shard is free."""


@dataclass(frozen=True, slots=True)
class ControlRecord:
    """One owner's word on one shard (the value of a control-topic record keyed ``shard-NN``)."""

    shard: int
    owner: str
    run_id: str
    state: ShardState
    at: datetime
    """When it was true: the heartbeat's time, or when the shard's data stopped (released)."""
    connections: dict[str, str] = field(default_factory=dict)
    """The shard's connection ids by plan name (``crypto.s03-0`` -> ``crypto.s03-0#2@<run id>``)."""

    def encode(self) -> bytes:
        """The record's value (JSON, readable with any consumer)."""
        return orjson.dumps(
            {
                "shard": self.shard,
                "owner": self.owner,
                "run_id": self.run_id,
                "state": self.state.value,
                "at": self.at.isoformat(),
                "connections": self.connections,
            }
        )

    @classmethod
    def decode(cls, value: bytes | None) -> ControlRecord | None:
        """The record in ``value``, or ``None`` for anything else (a tombstone, a foreign writer)."""
        if value is None:
            return None
        try:
            document = orjson.loads(value)
            at = datetime.fromisoformat(document["at"])
            connections = document.get("connections") or {}
            record = cls(
                int(document["shard"]),
                str(document["owner"]),
                str(document["run_id"]),
                ShardState(document["state"]),
                at,
                {str(name): str(ident) for name, ident in connections.items()},
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None
        return record if at.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a new owner takes over: when the shard's data stopped, and the connections it stopped on."""

    since: datetime
    previous_owner: str
    connections: dict[str, str]


class Verdict(enum.Enum):
    """What a new owner does now."""

    START = enum.auto()
    WAIT = enum.auto()


def decide(last: ControlRecord | None, now: datetime, *, stale_after: timedelta) -> tuple[Verdict, Inherited | None]:
    """Start or wait, given the last control record of the shard (see the module docstring).

    An ``owned`` record older than ``stale_after`` comes from a replica that stopped
    heartbeating (killed, or cut off): its data stopped about when it last said so, and there is
    no release to wait for.
    """
    if last is None:
        return Verdict.START, None
    inherited = Inherited(last.at, last.owner, last.connections)
    if last.state is ShardState.RELEASED or now - last.at > stale_after:
        return Verdict.START, inherited
    return Verdict.WAIT, inherited
