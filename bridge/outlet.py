"""The feed's one output port, and the base of outlets that sit in front of another (backfill, snapshots).

The feed knows nothing past this port: ``bridge.pipeline.Publisher`` implements it for the spool,
and tests collect outcomes through it with no Kafka.
"""

from __future__ import annotations

from typing import Protocol

from bridge.protocol.events import DataOutcome


class Outlet(Protocol):
    """The feed's one output: where records, dead letters and gaps go (``bridge.pipeline.Publisher``)."""

    def emit(self, outcome: DataOutcome) -> None:
        """Publish one outcome; never waits."""

    @property
    def accepting(self) -> bool:
        """False when the output is full: the feed then stops reading until there is room."""

    async def wait_for_room(self) -> None:
        """Return once the output accepts records again."""


class ForwardingOutlet:
    """An outlet in front of another (backfill, snapshots): whether it accepts, and when it has room, are the next's."""

    _outlet: Outlet

    @property
    def accepting(self) -> bool:
        """Whether the next outlet accepts records."""
        return self._outlet.accepting

    async def wait_for_room(self) -> None:
        """Return once the next outlet accepts records again; safe to cancel."""
        await self._outlet.wait_for_room()
