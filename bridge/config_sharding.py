"""The ``sharding`` section of the configuration: how replicas share the configured codes.

Part of the one frozen configuration tree (:mod:`bridge.config`); kept apart only to keep each
module small. See the README's "Scale-out" section for the modes and their trade-offs.
"""

from __future__ import annotations

import enum
import os
import socket
from typing import Any

from pydantic import Field, model_validator

from bridge.config_base import Frozen, PositiveSeconds
from bridge.protocol.shards import ordinal_of

DEFAULT_GROUP = "infoway-bridge"


def default_instance() -> str:
    """``$HOSTNAME`` (the pod name in Kubernetes, ``bridge-2`` in a StatefulSet), else the host name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


class ShardingMode(enum.StrEnum):
    """Who owns which shards."""

    NONE = "none"
    """One process owns every code (no shards): what a single replica needs."""
    STATIC = "static"
    """Replica ``index`` of ``count`` owns the shards whose number modulo ``count`` is ``index``; no failover."""
    GROUP = "group"
    """Kafka's group coordinator assigns the shards (one control-topic partition each) to the living replicas."""


class ShardingConfig(Frozen):
    """How the configured codes are split into shards and who owns them (``mode: group`` for replicas > 1)."""

    mode: ShardingMode = ShardingMode.NONE
    shards: int = Field(12, ge=1, le=256)
    """A code's shard is CRC-32 of the code modulo this; every replica must agree on it (and on the codes)."""
    instance: str = Field(default_factory=default_instance, min_length=1)
    """This replica's name: the group's static member id, and (static mode) where the index comes from."""
    index: int | None = Field(None, ge=0)
    """Static mode: this replica's number; default the ordinal at the end of ``instance`` (``bridge-2`` is 2)."""
    count: int | None = Field(None, ge=1)
    """Static mode: how many replicas share the shards."""
    group: str = Field(DEFAULT_GROUP, min_length=1)
    """Group mode: the consumer group every replica of one deployment joins (also the transactional ids' stem)."""
    control_topic: str = ""
    """One partition per shard (created at start): assignments, and each owner's heartbeats and releases.
    Default ``infoway.bridge.shards.<group>``: one per deployment, so no two read each other's heartbeats."""
    session_timeout_seconds: float = Field(10.0, ge=1)
    """A replica that stops heartbeating this long loses its shards to the others (the broker allows 6-1800 s)."""
    heartbeat_interval_seconds: PositiveSeconds = 1.0
    """How often an owner says, on the control topic, that it still holds its shards."""
    handoff_timeout_seconds: PositiveSeconds = 15.0
    """How long a new owner waits for the previous one to flush and release a shard before taking it anyway."""
    colocated: tuple[int, ...] = ()
    """Set by ``run --workers``, not by hand: the shards the other workers of this host own. Their spools
    share ``spool.dir`` with this worker's, and are theirs: never delivered here as a replica's leftovers."""

    @model_validator(mode="before")
    @classmethod
    def _control_topic_of_the_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("control_topic"):
            return {**data, "control_topic": f"infoway.bridge.shards.{data.get('group', DEFAULT_GROUP)}"}
        return data

    @model_validator(mode="after")
    def _static_fits(self) -> ShardingConfig:
        if self.mode is not ShardingMode.STATIC:
            return self
        if self.count is None:
            raise ValueError("static mode needs sharding.count (how many replicas share the shards)")
        if self.count > self.shards:
            raise ValueError(
                f"count ({self.count}) must not exceed shards ({self.shards}): some replica would own none"
            )
        if self.static_index >= self.count:
            raise ValueError(f"index ({self.static_index}) must be below count ({self.count})")
        return self

    @property
    def static_index(self) -> int:
        """Static mode: this replica's index, given or read from the pod name.

        Raises:
            ValueError: neither ``index`` is set nor does ``instance`` end in a number.
        """
        if self.index is not None:
            return self.index
        ordinal = ordinal_of(self.instance)
        if ordinal is None:
            raise ValueError(
                f"static mode needs sharding.index, or an instance name ending in -<number> "
                f"(a StatefulSet pod name); got instance {self.instance!r}"
            )
        return ordinal

    @property
    def sharded(self) -> bool:
        """Whether codes are split into shards at all."""
        return self.mode is not ShardingMode.NONE
