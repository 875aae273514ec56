"""Runs the README's Spark snippet in one local Spark session and prints every row it reads as a JSON line.

Started by tests/consumers/test_spark.py with the interpreter of a pyspark virtualenv (so it
imports nothing of the bridge), from the repository root, with one argument: a JSON file of
``{"snippet", "packages", "ivy", "checkpoints", "jobs": [{"frame", "topic", "schema_file",
"wire_format"} ...]}``. The snippet runs as it is, with ``spark`` defined; a job whose ``frame``
names a DataFrame the snippet made reads that one, the others call its ``infoway_stream``. All
streaming queries start at once, each with ``availableNow`` (everything on the topic, then stop) into a memory
table, whose rows are printed through ``to_json`` (nulls kept, decimals as JSON numbers, instants
ISO-8601 UTC) as ``{"job": i, "row": "<json>"}``, then ``{"job": i, "done": n}``, or ``{"job": i, "error": "..."}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession  # type: ignore[import-not-found]  # only in the pyspark virtualenvs


def emit(event: dict[str, Any]) -> None:
    """One line of output for the test."""
    print(json.dumps(event), flush=True)


def main(job_file: str) -> None:
    """Run every job of ``job_file`` in one Spark session."""
    plan = json.loads(Path(job_file).read_text(encoding="utf-8"))
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("infoway-readme-snippet")
        .config("spark.jars.packages", plan["packages"])
        .config("spark.jars.ivy", plan["ivy"])
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    namespace: dict[str, Any] = {"spark": spark}
    exec(plan["snippet"], namespace)  # noqa: S102 (the README's snippet is what this test runs)
    # Every query is started first and awaited afterwards, so their micro-batches overlap.
    started: dict[int, Any] = {}
    for index, job in enumerate(plan["jobs"]):
        try:
            frame = namespace.get(job["frame"]) if job["frame"] else None
            if frame is None:
                frame = namespace["infoway_stream"](spark, job["topic"], job["schema_file"], job["wire_format"])
            started[index] = (
                frame.writeStream.format("memory")
                .queryName(f"job_{index}")
                .option("checkpointLocation", f"{plan['checkpoints']}/job_{index}")
                .trigger(availableNow=True)
                .start()
            )
        except Exception as error:  # one failing job must not hide the others
            emit({"job": index, "error": f"{type(error).__name__}: {str(error)[:2000]}"})
    for index, query in started.items():
        try:
            query.awaitTermination()
            as_json = f"SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS row FROM job_{index}"  # noqa: S608
            rows = spark.sql(as_json).collect()
            for row in rows:
                emit({"job": index, "row": row["row"]})
            emit({"job": index, "done": len(rows)})
        except Exception as error:  # one failing job must not hide the others
            emit({"job": index, "error": f"{type(error).__name__}: {str(error)[:2000]}"})
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
