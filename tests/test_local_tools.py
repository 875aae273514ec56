"""What make and scripts/kafka-local, scripts/registry-local tell a person about downloads and leftovers."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import KAFKA_LOCAL, REGISTRY_LOCAL, REPO, free_port, run_script


@pytest.mark.parametrize(
    ("script", "line"),
    [
        (KAFKA_LOCAL, r"kafka-local: Kafka 4\.1\.1 jars in \S+/\.cache/kafka/4\.1\.1/lib"),
        (REGISTRY_LOCAL, r"registry-local: Apicurio Registry \S+ in \S+/\.cache/registry/apicurio-\S+"),
    ],
)
def test_fetch_says_what_is_cached_where_and_how_big(script: Path, line: str) -> None:
    """`fetch` (run by make tools before the tests) names the Kafka jars or the registry, their folder and size."""
    result = run_script(script, "fetch")
    assert result.returncode == 0, result.stderr
    size = r" \(\d+ MiB, downloaded once from Maven Central\)$"
    assert re.search("^" + line + size, result.stderr, re.MULTILINE), result.stderr


def test_registry_stop_purge_deletes_the_state_folder() -> None:
    """`registry-local stop --purge` leaves nothing of that port in the temp folder, running or not."""
    port = free_port()
    state = Path(tempfile.gettempdir()) / f"infoway-registry-local-{port}"
    state.mkdir()
    (state / "registry.log").write_text("an earlier run\n", encoding="utf-8")
    result = run_script(REGISTRY_LOCAL, "stop", "--port", str(port), "--purge")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"registry-local: no registry running on port {port}\n"
    assert not state.exists()


def test_make_says_it_builds_the_virtualenv_and_installs_the_test_tools() -> None:
    """A fresh `make test` announces the venv (with its size) and the tools it installs or downloads."""
    plan = subprocess.run(
        ["make", "-n", "-B", "test"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "creating .venv and installing the bridge with its dev tools from PyPI (about 45 MB of packages" in plan
    assert "installing kcat, the independent Kafka client the tests read keys with (Debian package, once)" in plan
    assert "scripts/kafka-local fetch" in plan
    assert "scripts/registry-local fetch" in plan
