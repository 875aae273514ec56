"""The ``spool`` and ``delivery`` sections of the configuration: what stands between the feed and Kafka.

Part of the one frozen configuration tree (:mod:`bridge.config`); kept apart only to keep each
module small.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from pydantic import Field, model_validator

from bridge.config_base import Frozen

MIB = 1 << 20


def default_spool_dir() -> Path:
    """``$XDG_STATE_HOME/infoway-bridge/spool``, else ``~/.local/state/infoway-bridge/spool``."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "infoway-bridge" / "spool"


class WhenFull(enum.StrEnum):
    """What the spool does at ``spool.max_bytes``."""

    STOP_READING = "stop-reading"
    """Close the vendor connections until there is room again; the interval is published as a gap."""
    DROP_OLDEST = "drop-oldest"
    """Delete the oldest undelivered records to make room, counted in a metric; the feed goes on."""


class DeliveryMode(enum.StrEnum):
    """How the spool's records reach Kafka."""

    EXACTLY_ONCE = "exactly-once"
    """A transactional producer commits each batch together with the spool position it reached."""
    AT_LEAST_ONCE = "at-least-once"
    """An idempotent producer; a batch retried after a timeout or a restart may be written twice."""


class SpoolConfig(Frozen):
    """The write-ahead log between serialisation and the producer.

    Every record is appended here on receipt, in receipt order, and leaves only once Kafka has
    acknowledged it, so the socket is read at full speed whatever Kafka does.
    ``dir: null`` keeps the spool in memory only (bounded by ``max_bytes``): nothing survives a
    restart then.
    """

    dir: Path | None = Field(default_factory=default_spool_dir)
    max_bytes: int = Field(1024 * MIB, ge=MIB)
    """At this size ``when_full`` applies."""
    segment_bytes: int = Field(64 * MIB, ge=64 * 1024)
    """Segment files are this large; a segment is deleted once everything in it is acknowledged."""
    memory_bytes: int = Field(16 * MIB, ge=MIB)
    """The newest records are also kept in memory (up to this much, objects included), so the producer
    reads the disk only after it fell behind."""
    sync_every_records: int = Field(1000, ge=1)
    sync_every_ms: int = Field(50, ge=1)
    """Records are written out (and fsynced with ``fsync``) after this many records or milliseconds."""
    fsync: bool = True
    """Off: written to the operating system only, which survives the process (kill -9) but not power loss."""
    when_full: WhenFull = WhenFull.STOP_READING

    @model_validator(mode="after")
    def _sizes_fit(self) -> SpoolConfig:
        if self.segment_bytes > self.max_bytes:
            raise ValueError(f"segment_bytes ({self.segment_bytes}) must not exceed max_bytes ({self.max_bytes})")
        return self


class DeliveryConfig(Frozen):
    """From the spool to Kafka."""

    mode: DeliveryMode = DeliveryMode.EXACTLY_ONCE
    transactional_id: str | None = None
    """Exactly-once only; default ``<kafka.client_id>.<host name>``. A second process with this id fences the first."""
    transaction_max_records: int = Field(5000, ge=1)
    """Records per transaction (exactly-once) or per delivery round (at-least-once), at the most."""
    max_wait_ms: int = Field(5, ge=0)
    """How long a round waits for more records, counted from the oldest one's receipt (as Kafka's ``linger.ms``)."""
    transaction_timeout_seconds: int = Field(10, ge=1, le=900)
    """Exactly-once only: the broker aborts a transaction left open this long (by a process killed
    mid-transaction, whose id nobody takes over). Until then it holds back what read_committed
    readers of its partitions see. 10 s as in Kafka Streams; a round takes milliseconds."""
