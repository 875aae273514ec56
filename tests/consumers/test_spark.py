"""Spark Structured Streaming reads every topic through the README's snippet, row for row as written and sent.

One Spark session per release (3.5 and 4.x, PyPI's pyspark, the Kafka and Avro packages from Maven
Central) runs the README's Spark snippet unmodified but for the broker address and the trade
topic, then reads trades, depth and kline in raw and confluent formats with availableNow.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from decimal import Decimal
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
from tests.consumers.oracle import SCHEMA_OF_STREAM
from tests.consumers.snippets import README_BOOTSTRAP, README_TOPICS, localized, snippets
from tests.consumers.tools import REPO, SPARK_IVY, SPARK_LINES, spark_python

SPARK_JOB = Path(__file__).resolve().parent / "spark_job.py"
SPARK_TIMEOUT_S = 900
README_FRAME = "trades"
"""The DataFrame the README's snippet makes itself: the raw trade job reads that one."""


def run_spark_line(line: str, data: dict[str, Produced], folder: Path) -> dict[JobKey, Any]:
    """Every (format, stream) job in one Spark session; each job's rows (parsed JSON) or its error text."""
    raw = data["raw"]
    snippet = localized(
        snippets()["spark"],
        {README_BOOTSTRAP: raw.bootstrap, f'"{README_TOPICS["trade"]}"': f'"{raw.topics["trade"]}"'},
    )
    keys = [(wire_format, stream) for wire_format in ENGINE_FORMATS for stream in STREAMS]
    jobs = [
        {
            "frame": README_FRAME if key == ("raw", "trade") else None,
            "topic": data[key[0]].topics[key[1]],
            "schema_file": f"schemas/{SCHEMA_OF_STREAM[key[1]]}.avsc",
            "wire_format": key[0],
        }
        for key in keys
    ]
    plan = {"snippet": snippet, "packages": SPARK_LINES[line].packages, "ivy": str(SPARK_IVY),
            "checkpoints": str(folder / "checkpoints"), "jobs": jobs}  # fmt: skip
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    result = subprocess.run(
        [str(spark_python(SPARK_LINES[line])), str(SPARK_JOB), str(plan_file)],
        cwd=REPO, capture_output=True, text=True, timeout=SPARK_TIMEOUT_S, check=False,
    )  # fmt: skip
    return job_outcomes(f"Spark {line}", result, keys, lambda row: json.loads(row, parse_float=Decimal))


@pytest.fixture(scope="module")
def spark_results(
    produced: Callable[[str, str | None], Produced], schema_registry: str, tmp_path_factory: pytest.TempPathFactory
) -> EngineResults:
    """Each Spark release's outcomes for every (format, stream), from one session per release, cached."""
    return engine_results(run_spark_line, produced, schema_registry, tmp_path_factory)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("wire_format", ENGINE_FORMATS)
@pytest.mark.parametrize("line", list(SPARK_LINES))
def test_spark_reads_every_row_exactly_with_the_readme_snippet(
    line: str, wire_format: str, stream: str, spark_results: EngineResults
) -> None:
    """Every record comes out of Spark once, keyed by its symbol, each field equal to Apache avro's reading of it."""
    data, results = spark_results(line)
    outcome = results[(wire_format, stream)]
    assert_engine_read_the_topic(f"Spark {line}", outcome, data[wire_format], stream)
    assert all(row["key"] == row["symbol"] for row in outcome)
