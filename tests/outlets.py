"""Test doubles for the feed's Outlet protocol (pure: no Kafka, no spool)."""

from __future__ import annotations

from bridge.protocol.events import DataOutcome


class Collected:
    """An outlet that keeps what it is given (the publisher's place in the chain)."""

    def __init__(self) -> None:
        self.outcomes: list[DataOutcome] = []
        self.accepting = True

    def emit(self, outcome: DataOutcome) -> None:
        """Keep it."""
        self.outcomes.append(outcome)

    async def wait_for_room(self) -> None:
        """Never full."""
