"""Flink SQL reads every topic with the README's DDL, and every row equals what the bridge wrote and the simulator sent.

One JVM per Flink line (1.20 LTS and 2.2) runs the README's DDL of trades, depth and kline in the
``avro`` (raw) and ``avro-confluent`` formats, each followed by a bounded ``SELECT *`` (the bounded
mode is a query hint, so the DDL stays exactly the README's), on an in-process MiniCluster.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.consumers.conftest import STREAMS, Produced
from tests.consumers.engines import ENGINE_FORMATS, JobKey, assert_engine_read_the_topic, engine_topics, job_outcomes
from tests.consumers.snippets import flink_ddl
from tests.consumers.tools import FLINK_LINES, flink_command

FLINK_TIMEOUT_S = 600
_TABLE = re.compile(r"CREATE TABLE (\w+)")


def bounded_query(ddl: str) -> str:
    """A query reading everything now on the table's topic, then ending (the bound is a hint, not DDL)."""
    match = _TABLE.search(ddl)
    assert match is not None, ddl
    return f"SELECT * FROM {match[1]} /*+ OPTIONS('scan.bounded.mode' = 'latest-offset') */;\n"  # noqa: S608


def run_flink_line(line: str, jobs: dict[JobKey, str], folder: Path) -> dict[JobKey, Any]:
    """Run each job's SQL in one Flink JVM; each job's rows, or its error text."""
    keys = list(jobs)
    files = []
    for index, key in enumerate(keys):
        path = folder / f"{index}-{key[0]}-{key[1]}.sql"
        path.write_text(jobs[key], encoding="utf-8")
        files.append(path)
    command = flink_command(FLINK_LINES[line], files)
    result = subprocess.run(command, capture_output=True, text=True, timeout=FLINK_TIMEOUT_S, check=False)
    return job_outcomes(f"Flink {line}", result, keys, lambda row: row)


@pytest.fixture(scope="module")
def flink_results(
    produced: Callable[[str, str | None], Produced], schema_registry: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[dict[str, Produced], dict[JobKey, Any]]]:
    """Each Flink line's results for every (format, stream), from one JVM run per line, cached for the module."""
    data = engine_topics(produced, schema_registry)

    @cache
    def results_of(line: str) -> dict[JobKey, Any]:
        jobs = {}
        for wire_format in ENGINE_FORMATS:
            topics = data[wire_format]
            for stream in STREAMS:
                ddl = flink_ddl(stream, wire_format, topics.bootstrap, topics.topics[stream], topics.registry)
                jobs[(wire_format, stream)] = f"{ddl}\n{bounded_query(ddl)}"
        return run_flink_line(line, jobs, tmp_path_factory.mktemp(f"flink-{line}"))

    return lambda line: (data, results_of(line))


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("wire_format", ENGINE_FORMATS)
@pytest.mark.parametrize("line", list(FLINK_LINES))
def test_flink_reads_every_row_exactly_with_the_readme_ddl(
    line: str, wire_format: str, stream: str, flink_results: Callable[[str], Any]
) -> None:
    """Every record comes out of Flink once, each field equal to Apache avro's reading of it and to the sent push."""
    data, results = flink_results(line)
    assert_engine_read_the_topic(f"Flink {line}", results[(wire_format, stream)], data[wire_format], stream)
