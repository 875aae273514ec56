"""The console script: help, configuration errors at start, and check-config, as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"


def run(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script and capture its output."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [BRIDGE, *arguments], capture_output=True, text=True, timeout=60, check=False, env=environment
    )


def test_help_lists_the_commands() -> None:
    """--help names run, check-config and simulate."""
    result = run("--help")
    assert result.returncode == 0
    for command in ("run", "check-config", "simulate"):
        assert command in result.stdout


def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    """An invalid value stops `run` with status 2 and a message naming the key and what was expected."""
    config = tmp_path / "bridge.yaml"
    config.write_text("source:\n  subscriptions: [{business: cryptos, codes: [BTCUSDT]}]\n", encoding="utf-8")
    result = run("run", "--config", str(config), env={"INFOWAY_API_KEY": "k"})
    assert result.returncode == 2
    assert "source.subscriptions.0.business: Input should be 'stock', 'crypto', 'common', 'japan' or 'india'" in (
        result.stderr
    )


def test_check_config_prints_the_result_with_the_key_masked(tmp_path: Path) -> None:
    """check-config validates with the environment and prints the tree without the key."""
    config = tmp_path / "bridge.yaml"
    config.write_text("source:\n  subscriptions: [{business: crypto, codes: BTCUSDT}]\n", encoding="utf-8")
    result = run("check-config", "--config", str(config), env={"INFOWAY_API_KEY": "very-secret-1"})
    assert result.returncode == 0, result.stderr
    assert '"codes": [\n          "BTCUSDT"' in result.stdout
    assert "very-secret-1" not in result.stdout
    assert "**********" in result.stdout


def test_unreachable_kafka_exits_3_with_advice(tmp_path: Path) -> None:
    """With no broker at the address, `run` exits 3 and says which setting to check."""
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "source:\n  subscriptions: [{business: crypto, codes: [BTCUSDT]}]\n"
        "kafka: {bootstrap_servers: '127.0.0.1:1', request_timeout_seconds: 2}\nmetrics: {port: 0}\n"
        f"spool: {{dir: '{tmp_path / 'spool'}'}}\n",
        encoding="utf-8",
    )
    result = run("run", "--config", str(config), env={"INFOWAY_API_KEY": "cli-test-key-123"})
    assert result.returncode == 3, result.stderr
    assert "check kafka.bootstrap_servers" in result.stderr
