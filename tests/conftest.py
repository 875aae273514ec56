"""Shared fixtures: a real Kafka broker for the whole session, and the repository's paths.

``kafka_bootstrap`` never skips: it takes ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a
testcontainers Kafka when a Docker engine answers, else a local KRaft broker started from
Maven Central jars by ``scripts/kafka-local`` on free ports (stopped at the end of the session).
``secured_broker`` is a broker of our own with SASL_PLAINTEXT and SASL_SSL listeners besides PLAINTEXT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from bridge.workers import free_ports

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for several at once, ``free_ports``)."""
    return free_ports(1)[0]


def run_script(script: Path, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run one of scripts/ with this interpreter, capturing its output."""
    return subprocess.run(
        [sys.executable, str(script), *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


# The one user of a broker started with --security (see scripts/kafka-local --help).
SASL_USER = "bridge"
SASL_PASSWORD = "bridge-secret"

Security = Literal["none", "sasl", "sasl-ssl"]


class LocalBroker:
    """A broker of our own (scripts/kafka-local on free ports) that a test may stop and restart.

    With ``security`` "sasl" it also has a SASL_PLAINTEXT listener at ``sasl_bootstrap``, with
    "sasl-ssl" also a SASL_SSL one at ``ssl_bootstrap`` whose certificate ``ca_file`` signs; the user
    is ``SASL_USER`` / ``SASL_PASSWORD`` for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    """

    def __init__(self, security: Security = "none") -> None:
        # Chosen together: ports probed one at a time can come back twice (CI once got the same one for both).
        self.port, self.controller_port, sasl_port, ssl_port = free_ports(4)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.security = security
        self.sasl_port = sasl_port if security != "none" else None
        self.ssl_port = ssl_port if security == "sasl-ssl" else None
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}" if self.sasl_port else None
        self.ssl_bootstrap = f"127.0.0.1:{self.ssl_port}" if self.ssl_port else None
        # Where scripts/kafka-local writes the throwaway CA (its per-port folder under $TMPDIR).
        state = Path(tempfile.gettempdir()) / f"infoway-kafka-local-{self.port}"
        self.ca_file = state / "tls" / "ca.pem" if self.ssl_port else None

    def _run(self, *arguments: str) -> None:
        result = run_script(KAFKA_LOCAL, *arguments)
        if result.returncode != 0:
            pytest.fail(f"kafka-local {' '.join(arguments)} failed:\n{result.stderr}", pytrace=False)

    def start(self, *, keep_data: bool = False) -> None:
        """Start it; with ``keep_data`` on the previous data (a restart, not a new cluster)."""
        ports = ["--port", str(self.port), "--controller-port", str(self.controller_port)]
        if self.security != "none":
            ports += ["--security", self.security, "--sasl-port", str(self.sasl_port)]
        if self.ssl_port is not None:
            ports += ["--ssl-port", str(self.ssl_port)]
        self._run("start", *ports, *(["--keep-data"] if keep_data else []))

    def stop(self, *, purge: bool = False) -> None:
        """Stop it (controlled shutdown); ``purge`` also deletes its data, for the final stop."""
        self._run("stop", "--port", str(self.port), *(["--purge"] if purge else []))


@pytest.fixture(scope="session", autouse=True)
def _remove_test_spools() -> Iterator[None]:
    """Tests' spool directories go when the session ends, so a run leaves nothing in the temp folder."""
    from tests.harness import SPOOLS

    yield
    shutil.rmtree(SPOOLS, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for this test session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    broker = LocalBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop(purge=True)


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    """A fresh broker for one test that restarts or stops Kafka (never the shared session broker)."""
    broker = LocalBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(purge=True)


@pytest.fixture(scope="module")
def secured_broker() -> Iterator[LocalBroker]:
    """A broker of our own with SASL_PLAINTEXT and SASL_SSL listeners next to PLAINTEXT, for one module.

    Tests authenticate on ``sasl_bootstrap`` / ``ssl_bootstrap`` (trusting ``ca_file``) and read back
    over the unauthenticated ``bootstrap``. Never the session broker: that one has no SASL listeners.
    """
    broker = LocalBroker(security="sasl-ssl")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(purge=True)


REGISTRY_LOCAL = REPO / "scripts" / "registry-local"
# Apicurio 3.x needs Java 21+; 2.6 runs on Java 17, the only Java some machines have.
REGISTRY_VERSIONS = ("3.3.3", "2.6.13.Final")


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[str]:
    """The Confluent-compatible API root of a real registry (Apicurio, from Maven Central) for this session."""
    configured = os.environ.get("SCHEMA_REGISTRY_URL")
    if configured:
        yield configured
        return
    port, management_port = free_ports(2)
    errors = []
    for version in REGISTRY_VERSIONS:
        started = run_script(
            REGISTRY_LOCAL,
            "start",
            "--port",
            str(port),
            "--management-port",
            str(management_port),
            "--version",
            version,
        )
        if started.returncode == 0:
            break
        errors.append(f"Apicurio {version}: {started.stderr.strip()}")
    else:
        pytest.fail("scripts/registry-local could not start a registry:\n" + "\n".join(errors), pytrace=False)
    try:
        yield started.stdout.strip()
    finally:
        run_script(REGISTRY_LOCAL, "stop", "--port", str(port), "--purge", timeout=60)
