"""Flink SQL reads every topic with the README's DDL, and every row equals what the bridge wrote and the simulator sent.

One JVM per Flink line (1.20 LTS and 2.2) runs the README's DDL of trades, depth and kline in the
``avro`` (raw) and ``avro-confluent`` formats, each followed by a bounded ``SELECT *`` (the bounded
mode is a query hint, so the DDL stays exactly the README's), on an in-process MiniCluster.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.consumers.conftest import STREAMS, Produced
from tests.consumers.engines import (
    ENGINE_FORMATS,
    EngineResults,
    JobKey,
    assert_engine_read_the_topic,
    engine_results,
    job_outcomes,
)
from tests.consumers.snippets import flink_ddl
from tests.consumers.tools import FLINK_LINES, flink_command

FLINK_TIMEOUT_S = 600
_TABLE = re.compile(r"CREATE TABLE (\w+)")


def bounded_query(ddl: str) -> str:
    """A query reading everything now on the table's topic, then ending (the bound is a hint, not DDL)."""
    match = _TABLE.search(ddl)
    assert match is not None, ddl
    return f"SELECT * FROM {match[1]} /*+ OPTIONS('scan.bounded.mode' = 'latest-offset') */;\n"  # noqa: S608


def run_flink_line(line: str, data: dict[str, Produced], folder: Path) -> dict[JobKey, Any]:
    """The README's DDL and a bounded query for every (format, stream), in one Flink JVM; each one's outcome."""
    keys = [(wire_format, stream) for wire_format in ENGINE_FORMATS for stream in STREAMS]
    files = []
    for index, (wire_format, stream) in enumerate(keys):
        topics = data[wire_format]
        ddl = flink_ddl(stream, wire_format, topics.bootstrap, topics.topics[stream], topics.registry)
        path = folder / f"{index}-{wire_format}-{stream}.sql"
        path.write_text(f"{ddl}\n{bounded_query(ddl)}", encoding="utf-8")
        files.append(path)
    command = flink_command(FLINK_LINES[line], files)
    result = subprocess.run(command, capture_output=True, text=True, timeout=FLINK_TIMEOUT_S, check=False)
    return job_outcomes(f"Flink {line}", result, keys, lambda row: row)


@pytest.fixture(scope="module")
def flink_results(
    produced: Callable[[str, str | None], Produced], schema_registry: str, tmp_path_factory: pytest.TempPathFactory
) -> EngineResults:
    """Each Flink line's outcomes for every (format, stream), from one JVM per line, cached for the module."""
    return engine_results(run_flink_line, produced, schema_registry, tmp_path_factory)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("wire_format", ENGINE_FORMATS)
@pytest.mark.parametrize("line", list(FLINK_LINES))
def test_flink_reads_every_row_exactly_with_the_readme_ddl(
    line: str, wire_format: str, stream: str, flink_results: EngineResults
) -> None:
    """Every record comes out of Flink once, each field equal to Apache avro's reading of it and to the sent push."""
    data, results = flink_results(line)
    assert_engine_read_the_topic(f"Flink {line}", results[(wire_format, stream)], data[wire_format], stream)
