"""The console script: help, configuration errors at start, and check-config, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import API_KEY_ENV, BOOTSTRAP_ENV
from tests.conftest import free_port
from tests.harness import topics

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"


def run(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script and capture its output; the bridge's own variables come only from ``env``."""
    inherited = {name: value for name, value in os.environ.items() if name not in (API_KEY_ENV, BOOTSTRAP_ENV)}
    environment = {**inherited, **(env or {})}
    return subprocess.run(
        [BRIDGE, *arguments], capture_output=True, text=True, timeout=60, check=False, env=environment
    )


_LOG_LINE = re.compile(r"^\S+Z (?P<level>[A-Z]+) +(?P<logger>\S+)  (?P<message>.*)$")


def log_lines(stderr: str, *, logger: str | None = None) -> list[tuple[str, str]]:
    """(level, message) of each text log line, optionally of one logger only; anything else fails the test."""
    lines = []
    for line in stderr.splitlines():
        match = _LOG_LINE.match(line)
        assert match is not None, f"not a log line: {line!r}"
        if logger is None or match["logger"] == logger:
            lines.append((match["level"], match["message"]))
    return lines


ONE_ENTRY = "source:\n  subscriptions: [{business: crypto, codes: [BTCUSDT]}]\n"


def write_config(tmp_path: Path, text: str = ONE_ENTRY, more: str = "") -> Path:
    """A bridge.yaml in ``tmp_path``: ``text`` (by default one valid subscription), ``more``, and a spool of its own."""
    config = tmp_path / "bridge.yaml"
    spool = "" if "spool:" in text + more else f"spool: {{dir: '{tmp_path / 'spool'}'}}\n"
    config.write_text(text + more + spool, encoding="utf-8")
    return config


def test_help_lists_the_commands() -> None:
    """--help names run, check-config and simulate."""
    result = run("--help")
    assert result.returncode == 0
    for command in ("run", "check-config", "simulate"):
        assert command in result.stdout


def test_bad_config_fails_at_start_with_one_line_naming_key_expectation_and_value(tmp_path: Path) -> None:
    """An invalid value stops `run` with status 2 and exactly one log line: the key, what was expected, the value."""
    config = write_config(tmp_path, ONE_ENTRY.replace("crypto", "cryptos"))
    result = run("run", "--config", str(config), env={"INFOWAY_API_KEY": "k"})
    assert result.returncode == 2
    assert log_lines(result.stderr) == [
        (
            "ERROR",
            "invalid configuration: source.subscriptions.0.business: "
            "expected 'stock', 'crypto', 'common', 'japan' or 'india', got 'cryptos'",
        )
    ]


def test_a_yaml_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    """Broken YAML is reported with the file's path, line and column (not "<unicode string>"), status 2."""
    config = tmp_path / "bridge.yaml"
    config.write_text("source:\n  url: 'ws://h/ws\n", encoding="utf-8")
    result = run("check-config", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {config}, line 3, column 1: not valid YAML: found unexpected end of stream "
        "(while scanning a quoted scalar at line 2, column 8)\n"
    )


def test_check_config_prints_the_result_with_the_key_masked(tmp_path: Path) -> None:
    """check-config validates with the environment and prints the tree without the key."""
    config = write_config(tmp_path)
    result = run("check-config", "--config", str(config), env={"INFOWAY_API_KEY": "very-secret-1"})
    assert result.returncode == 0, result.stderr
    assert '"codes": [\n          "BTCUSDT"' in result.stdout
    assert "very-secret-1" not in result.stdout
    assert "**********" in result.stdout


def test_check_config_shows_kline_intervals_as_labels_and_only_where_klines_are_subscribed(tmp_path: Path) -> None:
    """Intervals print as written (1m, 1h, 1d), and a trade-only entry shows no kline_types at all."""
    config = write_config(
        tmp_path,
        "source:\n  subscriptions:\n"
        "    - {business: crypto, codes: [BTCUSDT], streams: [trade, kline], kline_types: [1m, 1h, 8]}\n"
        "    - {business: stock, codes: [AAPL.US]}\n",
    )
    result = run("check-config", "--config", str(config), env={"INFOWAY_API_KEY": "k"})
    assert result.returncode == 0, result.stderr
    assert '"kline_types": [\n          "1m",\n          "1h",\n          "1d"\n        ]' in result.stdout
    assert result.stdout.count("kline_types") == 1


def test_check_config_refuses_a_bootstrap_port_that_is_not_a_number(tmp_path: Path) -> None:
    """`bootstrap_servers: 127.0.0.1:abc` is refused at once, naming the key and the value (status 2)."""
    config = write_config(tmp_path, more="kafka:\n  bootstrap_servers: 127.0.0.1:abc\n")
    result = run("check-config", "--config", str(config), env={"INFOWAY_API_KEY": "k"})
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid configuration: kafka.bootstrap_servers: expected host:port[,host:port...] "
        "with ports from 1 to 65535, got '127.0.0.1:abc'\n"
    )


def test_check_config_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`check-config | head -2`: a reader that stops early gets no BrokenPipeError traceback, and status 0."""
    config = write_config(tmp_path)
    environment = {**os.environ, API_KEY_ENV: "k"}
    process = subprocess.Popen(
        [BRIDGE, "check-config", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # before the child writes: its first write meets a closed pipe
    status = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert (status, stderr) == (0, "")


def test_a_busy_metrics_port_is_a_configuration_error(tmp_path: Path) -> None:
    """With metrics.port held by another listener, `run` exits 2 with one line naming metrics.port and the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        more = f"kafka: {{bootstrap_servers: '127.0.0.1:1'}}\nmetrics: {{host: 127.0.0.1, port: {port}}}\n"
        config = write_config(tmp_path, more=more)
        result = run("run", "--config", str(config), env={"INFOWAY_API_KEY": "cli-test-key-123"})
    assert result.returncode == 2
    assert log_lines(result.stderr) == [
        (
            "ERROR",
            f"metrics.port: cannot listen on 127.0.0.1:{port}: address already in use; another process listens "
            "there: stop it, or set another metrics.port (0 picks a free one)",
        )
    ]


def test_unreachable_kafka_exits_3_with_one_line_of_advice(tmp_path: Path) -> None:
    """With no broker at the address, `run` exits 3 and says, once, what failed and which setting to check."""
    more = "kafka: {bootstrap_servers: '127.0.0.1:1', request_timeout_seconds: 2}\nmetrics: {port: 0}\n"
    config = write_config(tmp_path, more=more)
    result = run("run", "--config", str(config), env={"INFOWAY_API_KEY": "cli-test-key-123"})
    assert result.returncode == 3, result.stderr
    assert log_lines(result.stderr, logger="bridge") == [
        (
            "ERROR",
            "cannot check or create topics at 127.0.0.1:1 (could not connect to any broker); "
            "check kafka.bootstrap_servers and the security settings",
        )
    ]


@pytest.mark.kafka
def test_an_unreachable_vendor_says_what_failed_and_where_then_sums_it_up(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Each failed attempt is one INFO line with the URL (no key) and the cause; the fifth in a row adds one WARNING."""
    closed_port = free_port()
    names = topics()
    config = write_config(
        tmp_path,
        ONE_ENTRY,
        f"  url: ws://127.0.0.1:{closed_port}/ws\n"
        "  reconnect: {initial_delay_seconds: 0.01, max_delay_seconds: 0.02}\n"
        f"kafka: {{bootstrap_servers: '{kafka_bootstrap}', topics: {{trade: {names['trade']}, "
        f"dead_letter: {names['dead_letter']}}}}}\nmetrics: {{port: 0}}\n",
    )
    result = run("run", "--config", str(config), "--run-for", "2", env={"INFOWAY_API_KEY": "cli-test-key-123"})
    assert result.returncode == 0, result.stderr
    feed = log_lines(result.stderr, logger="bridge.feed")
    url = f"ws://127.0.0.1:{closed_port}/ws"
    first = re.fullmatch(
        rf"connection crypto-0#1@\S+ \(business crypto\) could not connect to {re.escape(url)}: connection refused; "
        r"retrying in \d+\.\ds \(attempt 1\)",
        feed[0][1],
    )
    assert feed[0][0] == "INFO", feed[0]
    assert first is not None, feed[0]
    warnings = [message for level, message in feed if level == "WARNING"]
    assert len(warnings) == 1, "one WARNING sums up the failures in a row, not one per attempt"
    assert re.fullmatch(
        rf"connection crypto-0 \(business crypto\): 5 attempts in a row could not connect to {re.escape(url)} "
        r"over \d+s \(last: connection refused\); still retrying with backoff up to 0\.02s: "
        r"check source\.url, the network and the key",
        warnings[0],
    ), warnings[0]
    assert all(level in ("INFO", "WARNING") for level, _ in feed)
    assert "ended" not in result.stderr, "a connection that never opened did not end"
    assert "cli-test-key-123" not in result.stderr


def test_run_collects_the_young_generation_rarely_and_leaves_startup_objects_out_of_full_collections() -> None:
    """In a fresh interpreter (the setting is process-wide): the young threshold is ours, the rest Python's.

    The objects existing when ``run`` starts are frozen, so a full collection never rescans them.
    """
    probe = (
        "import gc, json; from bridge.cli import tune_garbage_collector; before = gc.get_threshold(); "
        "tune_garbage_collector(); print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    before, after, frozen = json.loads(result.stdout)
    assert after == [20_000, *before[1:]]
    assert frozen > 10_000, "the imported modules' objects are frozen"
