"""Literal frames for the pure tests: the fixture files, read once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bridge.records import Provenance

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECEIVED = datetime(2026, 8, 15, 12, 0, 0, tzinfo=UTC)
PROVENANCE = Provenance("crypto", "crypto-0#1", 1, RECEIVED)


def fixture(name: str) -> str:
    """The exact text of a fixture frame (no newline added or removed)."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_names() -> list[str]:
    """Every fixture frame file."""
    return sorted(p.name for p in FIXTURES.iterdir() if p.suffix in {".json", ".txt"})
