"""The stream processors the consumer tests run, installed once into ``.cache/`` from the registries.

* Flink: ``consumers/flink`` (one small Table API program) built by Maven against each Flink line,
  its runtime jars copied from Maven Central into ``.cache/flink/<version>/lib``.
* Spark: PyPI's ``pyspark`` in one virtualenv per version under ``.cache/spark/<version>/venv``;
  its Kafka and Avro packages come from Maven Central through ``spark.jars.packages`` into the Ivy
  cache ``.cache/spark/ivy`` (resolved once here; a session started by the tests finds them there).

Each step is skipped when its marker (a digest of what it was built from) is there, so a warm run
costs nothing; a cold one prints what it downloads. ``python -m tests.consumers.tools`` installs all
(``make consumer-tools``, which ``make test`` runs first).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
CACHE = REPO / ".cache"
FLINK_PROJECT = REPO / "consumers" / "flink"
FLINK_MAIN_CLASS = "io.infoway.consumers.FlinkSqlRunner"
FLINK_JVM_OPTIONS = ("-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
BUILD_TIMEOUT_S = 1200


@dataclass(frozen=True)
class FlinkLine:
    """One Flink release line and the connector and SQL format jars that go with it on Maven Central."""

    version: str
    kafka_connector: str
    sql_formats: str
    """flink-sql-avro-confluent-registry exists only as 1.20.0 and 2.2.0 of these lines."""


FLINK_LINES = {
    "1.20": FlinkLine("1.20.3", "3.4.0-1.20", "1.20.0"),
    "2.2": FlinkLine("2.2.0", "5.0.0-2.2", "2.2.0"),
}


@dataclass(frozen=True)
class SparkLine:
    """One Spark release: the PyPI version and the Scala suffix of its Maven packages."""

    version: str
    scala: str

    @property
    def packages(self) -> str:
        """``spark.jars.packages``: the Kafka source and Avro functions of this release."""
        return ",".join(
            f"org.apache.spark:{artifact}_{self.scala}:{self.version}"
            for artifact in ("spark-sql-kafka-0-10", "spark-avro")
        )


SPARK_LINES = {"3.5": SparkLine("3.5.7", "2.12"), "4.x": SparkLine("4.1.1", "2.13")}
SPARK_IVY = CACHE / "spark" / "ivy"


def say(message: str) -> None:
    """Tell the person at the terminal what is being installed (stderr: make shows it, pytest keeps it)."""
    print(f"consumer-tools: {message}", file=sys.stderr, flush=True)


def _digest(*parts: str | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.read_bytes() if isinstance(part, Path) else part.encode())
    return digest.hexdigest()[:16]


def _size_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def _run(command: list[str], what: str) -> None:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    say(f"{what}: done in {time.monotonic() - started:.0f} s")


def flink_classpath(line: FlinkLine) -> str:
    """The classpath of the Flink SQL runner for ``line``, built (and its jars fetched) when missing."""
    folder = CACHE / "flink" / line.version
    source = sorted(FLINK_PROJECT.rglob("*.java"))
    marker = folder / f".built-{_digest(FLINK_PROJECT / 'pom.xml', *source, repr(line))}"
    if not marker.exists():
        if shutil.which("mvn") is None:
            raise RuntimeError("mvn not found on PATH: the Flink consumer tests build their runner with Maven")
        shutil.rmtree(folder, ignore_errors=True)
        say(f"building the Flink {line.version} SQL runner; Maven fetches flink-table, flink-connector-kafka "
            f"{line.kafka_connector} and flink-sql-avro-confluent-registry {line.sql_formats} from Maven Central "
            "(about 160 MB, once)")  # fmt: skip
        _run(
            ["mvn", "-q", "-B", "-f", str(FLINK_PROJECT / "pom.xml"), f"-Drunner.dir={folder}",
             f"-Dflink.version={line.version}", f"-Dkafka.connector.version={line.kafka_connector}",
             f"-Dconfluent.format.version={line.sql_formats}", "package", "dependency:copy-dependencies",
             f"-DoutputDirectory={folder / 'lib'}", "-DincludeScope=runtime"],
            f"Flink {line.version} runner",
        )  # fmt: skip
        say(f"Flink {line.version}: {_size_mb(folder / 'lib'):.0f} MB of jars in {folder / 'lib'}")
        marker.touch()
    return f"{folder / 'flink-sql-runner-1.jar'}{os.pathsep}{folder / 'lib' / '*'}"


def flink_command(line: FlinkLine, sql_files: list[Path]) -> list[str]:
    """The command that runs ``sql_files`` on one in-process Flink of ``line`` (one JVM for all of them)."""
    java = shutil.which("java") or "java"
    return [java, *FLINK_JVM_OPTIONS, "-cp", flink_classpath(line), FLINK_MAIN_CLASS, *map(str, sql_files)]


def spark_python(line: SparkLine) -> Path:
    """The interpreter of a virtualenv with ``pyspark`` of ``line``, created when missing."""
    folder = CACHE / "spark" / line.version
    python = folder / "venv" / "bin" / "python"
    marker = folder / f".installed-{_digest(line.version)}"
    if not marker.exists():
        shutil.rmtree(folder / "venv", ignore_errors=True)
        say(f"installing pyspark {line.version} from PyPI into {folder / 'venv'} (about 320 to 460 MB, once)")
        _run([sys.executable, "-m", "venv", str(folder / "venv")], f"virtualenv for Spark {line.version}")
        _run([str(python), "-m", "pip", "install", "-q", f"pyspark=={line.version}"], f"pyspark {line.version}")
        marker.touch()
    return python


_IVY_WARM_UP = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").config("spark.jars.packages", sys.argv[1])
spark = spark.config("spark.jars.ivy", sys.argv[2]).config("spark.ui.enabled", "false").getOrCreate()
spark.stop()
"""


def spark_packages(line: SparkLine) -> None:
    """Fetch ``line``'s Kafka and Avro packages into the Ivy cache now, so the tests' sessions find them there."""
    marker = SPARK_IVY / f".resolved-{_digest(line.packages)}"
    if not marker.exists():
        python = spark_python(line)
        say(f"fetching {line.packages} and their dependencies from Maven Central into {SPARK_IVY} (once)")
        _run(
            [str(python), "-c", _IVY_WARM_UP, line.packages, str(SPARK_IVY)],
            f"Spark {line.version} packages",
        )
        marker.touch()


def install_all() -> None:
    """Everything the consumer tests need, for every line."""
    for flink in FLINK_LINES.values():
        flink_classpath(flink)
    for spark in SPARK_LINES.values():
        spark_packages(spark)


if __name__ == "__main__":
    install_all()
