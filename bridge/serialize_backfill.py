"""The Avro datum of a gap's backfill report: kept apart from :mod:`bridge.serialize` only to keep each module small."""

from __future__ import annotations

from typing import Any

from bridge.records import BackfillReport, epoch_millis


def backfill_to_avro(report: BackfillReport) -> dict[str, Any]:
    """The Avro datum of a gap's backfill report (the gap schema's ``backfill``)."""
    return {
        "status": report.status.value,
        "bars": report.bars,
        "first_bar": None if report.first_bar is None else epoch_millis(report.first_bar),
        "last_bar": None if report.last_bar is None else epoch_millis(report.last_bar),
        "items": [
            {"symbol": i.symbol, "stream": i.stream.value, "interval": i.interval, "bars": i.bars, "reason": i.reason}
            for i in report.items
        ],
    }
