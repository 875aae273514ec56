"""What the Flink and Spark tests share: one run per line, their jobs' output protocol, and the row comparison.

Both runners print JSON lines ``{"job": i, "row": ...}`` per row, then ``{"job": i, "done": n}``, or
``{"job": i, "error": "..."}``; a job that printed neither ``done`` nor ``error`` died with its JVM.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.consumers.conftest import Produced, assert_topics_hold_what_was_sent
from tests.consumers.oracle import engine_rows, full_tuple

ENGINE_FORMATS = ("raw", "confluent")
"""The wire formats the engines read with the README's snippets."""
JobKey = tuple[str, str]
"""(wire format, stream)."""


EngineRun = Callable[[str, dict[str, Produced], Path], dict[JobKey, Any]]
"""Runs every job of one engine line (its version key) on the topics, in a scratch folder."""
EngineResults = Callable[[str], tuple[dict[str, Produced], dict[JobKey, Any]]]
"""The topics and one line's job outcomes, by line."""


def engine_results(
    run: EngineRun,
    produced: Callable[[str, str | None], Produced],
    registry: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> EngineResults:
    """``run`` on the filled topics of every format the engines read, once per line (one JVM or session)."""
    data = {"raw": produced("raw", None), "confluent": produced("confluent", registry)}

    @cache
    def results_of(line: str) -> dict[JobKey, Any]:
        return run(line, data, tmp_path_factory.mktemp(f"engine-{line}"))

    return lambda line: (data, results_of(line))


def job_outcomes(
    engine: str, result: subprocess.CompletedProcess[str], keys: list[JobKey], parse_row: Callable[[Any], Any]
) -> dict[JobKey, Any]:
    """Each job's rows (through ``parse_row``) when it finished, else the text of its failure."""
    died = f"{engine}: no result; exit {result.returncode}\n{result.stderr[-3000:]}"
    outcome: dict[JobKey, Any] = dict.fromkeys(keys, died)
    rows: dict[JobKey, list[Any]] = {key: [] for key in keys}
    for text in result.stdout.splitlines():
        if not text.startswith("{"):
            continue
        event = json.loads(text)
        key = keys[event["job"]]
        if "row" in event:
            rows[key].append(parse_row(event["row"]))
        elif "done" in event:
            outcome[key] = rows[key]
        else:
            outcome[key] = f"{engine} failed: {event['error']}"
    return outcome


def assert_engine_read_the_topic(engine: str, outcome: Any, topics: Produced, stream: str) -> None:
    """The engine's rows are the topic's records, once each, every field equal to Apache avro's reading of it."""
    assert_topics_hold_what_was_sent(topics)
    assert isinstance(outcome, list), outcome
    records = topics.records[stream]
    assert len(outcome) == len(records), f"{engine}: {len(outcome)} rows for {len(records)} records"
    expected = engine_rows(stream, [record.value for record in records])
    first = full_tuple(stream, outcome[0]) if outcome else None
    assert engine_rows(stream, outcome) == expected, f"{engine} {topics.wire_format} {stream}: first row {first}"
