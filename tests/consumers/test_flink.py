"""Flink SQL reads every topic with the README's DDL, and every row equals what the bridge wrote and the simulator sent.

One JVM per Flink line (1.20 LTS and 2.2) runs the README's DDL of trades, depth and kline in the
``avro`` (raw) and ``avro-confluent`` formats, each followed by a bounded ``SELECT *`` (the bounded
mode is a query hint, so the DDL stays exactly the README's), on an in-process MiniCluster.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.consumers.conftest import STREAMS, Produced, assert_topics_hold_what_was_sent
from tests.consumers.oracle import engine_rows, full_tuple
from tests.consumers.snippets import flink_ddl
from tests.consumers.tools import FLINK_LINES, flink_command

FORMATS = ("raw", "confluent")
FLINK_TIMEOUT_S = 600
_TABLE = re.compile(r"CREATE TABLE (\w+)")


def bounded_query(ddl: str) -> str:
    """A query reading everything now on the table's topic, then ending (the bound is a hint, not DDL)."""
    match = _TABLE.search(ddl)
    assert match is not None, ddl
    return f"SELECT * FROM {match[1]} /*+ OPTIONS('scan.bounded.mode' = 'latest-offset') */;\n"  # noqa: S608


def run_flink_line(line: str, jobs: dict[tuple[str, str], str], folder: Path) -> dict[tuple[str, str], Any]:
    """Run each job's SQL in one Flink JVM; each job's rows, or its error text."""
    keys = list(jobs)
    files = []
    for index, key in enumerate(keys):
        path = folder / f"{index}-{key[0]}-{key[1]}.sql"
        path.write_text(jobs[key], encoding="utf-8")
        files.append(path)
    result = subprocess.run(
        flink_command(FLINK_LINES[line], files), capture_output=True, text=True, timeout=FLINK_TIMEOUT_S, check=False
    )
    outcome: dict[tuple[str, str], Any] = dict.fromkeys(
        keys, f"no output; exit {result.returncode}\n{result.stderr[-3000:]}"
    )
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in keys}
    for text in result.stdout.splitlines():
        if not text.startswith("{"):
            continue
        event = json.loads(text)
        key = keys[event["file"]]
        if "row" in event:
            rows[key].append(event["row"])
        elif "done" in event:
            outcome[key] = rows[key]
        elif "error" in event:
            outcome[key] = f"Flink {line} failed: {event['error']}"
    return outcome


@pytest.fixture(scope="module")
def flink_results(
    produced: Callable[[str, str | None], Produced], schema_registry: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[dict[str, Produced], dict[tuple[str, str], Any]]]:
    """Each Flink line's results for every (format, stream), from one JVM run per line, cached for the module."""
    data = {"raw": produced("raw", None), "confluent": produced("confluent", schema_registry)}

    @cache
    def results_of(line: str) -> dict[tuple[str, str], Any]:
        jobs = {}
        for wire_format in FORMATS:
            topics = data[wire_format]
            for stream in STREAMS:
                ddl = flink_ddl(stream, wire_format, topics.bootstrap, topics.topics[stream], topics.registry)
                jobs[(wire_format, stream)] = f"{ddl}\n{bounded_query(ddl)}"
        return run_flink_line(line, jobs, tmp_path_factory.mktemp(f"flink-{line}"))

    return lambda line: (data, results_of(line))


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("wire_format", FORMATS)
@pytest.mark.parametrize("line", list(FLINK_LINES))
def test_flink_reads_every_row_exactly_with_the_readme_ddl(
    line: str, wire_format: str, stream: str, flink_results: Callable[[str], Any]
) -> None:
    """Every record comes out of Flink once, each field equal to Apache avro's reading of it and to the sent push."""
    data, results = flink_results(line)
    topics = data[wire_format]
    assert_topics_hold_what_was_sent(topics)
    rows = results[(wire_format, stream)]
    assert isinstance(rows, list), rows
    expected = engine_rows(stream, [record.value for record in topics.records[stream]])
    assert len(rows) == len(topics.records[stream])
    assert engine_rows(stream, rows) == expected, (
        f"Flink {line} {wire_format} {stream}: first row {full_tuple(stream, rows[0]) if rows else None}"
    )
