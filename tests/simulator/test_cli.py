"""``infoway-bridge simulate``: its options, its help, and a real run stopped by SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from bridge.simulator import GatewayRules, SimulatorOptions
from bridge.simulator.cli import EXAMPLES, add_simulate_arguments, options_from_args
from tests.simulator.support import WAIT, recv_code, send_request

BRIDGE = shutil.which("infoway-bridge", path=str(Path(sys.executable).parent)) or "infoway-bridge"

FLAGS = (
    "--host",
    "--port",
    "--api-key",
    "--rate",
    "--depth-rate",
    "--kline-rate",
    "--max-pushes",
    "--max-depth-pushes",
    "--max-kline-pushes",
    "--record-sent",
    "--seed",
    "--summary-every",
    "--rest-port",
    "--rest-rate",
    "--rest-history-seconds",
    "--time-scale",
    "--quiet-bar-percent",
    "--frame-limit",
    "--frame-window",
    "--max-codes-per-connection",
    "--close-after",
    "--heartbeat-timeout",
    "--fail-subscribe-nth",
    "--subscribe-fail-505-nth",
    "--refuse-handshake",
    "--refuse-handshakes",
    "--garbage-every",
)


def parser() -> argparse.ArgumentParser:
    """A bare parser with the simulate options, as the main CLI builds its sub-command."""
    built = argparse.ArgumentParser(prog="simulate")
    add_simulate_arguments(built)
    return built


def test_help_describes_every_option_and_its_default() -> None:
    """Each flag has its own help entry in ``--help``, and the entry spells out its default."""
    text = parser().format_help()
    assert "Runs until SIGINT or SIGTERM" in " ".join(text.split())
    options = " ".join(text.partition("options:")[2].partition("examples:")[0].split())
    entries = {
        entry.split()[0]: entry for entry in re.split(r" (?=--[a-z0-9-]+ [A-Z_]+ )", options) if entry.startswith("--")
    }
    assert set(entries) == set(FLAGS)
    for flag, entry in entries.items():
        assert "(default: " in entry, flag


def test_defaults_are_the_options_defaults() -> None:
    """No flags give the same options as ``SimulatorOptions()``, bar the random seed."""
    args = parser().parse_args([])
    assert options_from_args(args) == replace(SimulatorOptions(), seed=None)
    assert args.summary_every == 5
    defaults = options_from_args(args)
    rules = defaults.rules
    assert (rules.frame_limit, rules.frame_window, rules.max_codes_per_connection) == (60, 60.0, 600)


def test_flags_map_onto_options(tmp_path: Path) -> None:
    """Every flag lands in the matching option."""
    record = tmp_path / "sent.jsonl"
    argv = [
        "--host=0.0.0.0",
        "--port=0",
        "--api-key=k",
        "--rate=20000",
        "--depth-rate=10",
        "--kline-rate=0",
        "--max-pushes=5",
        "--max-depth-pushes=6",
        "--max-kline-pushes=7",
        f"--record-sent={record}",
        "--seed=9",
        "--close-after=100",
        "--heartbeat-timeout=2.5",
        "--fail-subscribe-nth=3",
        "--refuse-handshake=429",
        "--refuse-handshakes=2",
        "--subscribe-fail-505-nth=4",
        "--garbage-every=10",
        "--frame-limit=0",
        "--frame-window=1.5",
        "--max-codes-per-connection=50",
    ]
    assert options_from_args(parser().parse_args(argv)) == SimulatorOptions(
        host="0.0.0.0",  # noqa: S104 - a listening address under test, nothing is bound
        port=0,
        api_key="k",
        rate=20000,
        depth_rate=10,
        kline_rate=0,
        max_pushes=5,
        max_depth_pushes=6,
        max_kline_pushes=7,
        record_sent=record,
        seed=9,
        rules=GatewayRules(
            close_after_pushes=100,
            heartbeat_timeout=2.5,
            fail_subscribe_nth=3,
            refuse_handshake_status=429,
            refuse_handshakes=2,
            subscribe_fail_505_nth=4,
            garbage_every=10,
            frame_limit=0,
            frame_window=1.5,
            max_codes_per_connection=50,
        ),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--close-after=0"],
        ["--garbage-every=-1"],
        ["--fail-subscribe-nth=x"],
        ["--refuse-handshake=200"],
        ["--refuse-handshake=600"],
        ["--heartbeat-timeout=0"],
        ["--frame-window=nan"],
        ["--frame-limit=-1"],
        ["--max-codes-per-connection=-5"],
    ],
)
def test_fault_flags_refuse_nonsense_at_parse_time(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A count below 1, a status outside 400..599 or a non-positive duration is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_mentions_the_fault_modes() -> None:
    """The description and the example name the limits and the fault flags."""
    text = " ".join(parser().format_help().split())
    for needle in ("60 client frames per minute", "600 codes per connection", "--close-after", "--garbage-every"):
        assert needle in text


async def test_a_real_run_serves_records_and_exits_0_on_sigint(tmp_path: Path) -> None:
    """``python -m bridge.simulator`` logs its URL, serves, flushes the record and exits 0 on SIGINT."""
    record = tmp_path / "sent.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.simulator",
        "--port=0",
        "--api-key=cli-secret-key",
        "--rate=2000",
        "--max-pushes=30",
        "--seed=3",
        "--summary-every=0.1",
        f"--record-sent={record}",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(WAIT * 2):
            while (match := re.search(rb"listening on (ws://\S+/ws)", await process.stderr.readline())) is None:
                pass
        url = match.group(1).decode()
        received: list[str] = []
        async with connect(f"{url}?business=crypto&apikey=cli-secret-key", max_queue=None) as ws:
            await send_request(ws, 10000, "t", {"codes": "BTCUSDT"})
            await recv_code(ws, 10001)
            async with asyncio.timeout(WAIT):
                while len(received) < 30:
                    text = await ws.recv()
                    assert isinstance(text, str)
                    received.append(text)
            await asyncio.sleep(0.25)  # long enough for a summary line
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT * 2):
            _, rest = await process.communicate()
    log = rest.decode()
    assert process.returncode == 0
    assert [json.loads(line)["frame"] for line in record.read_text().splitlines()] == received
    assert "connection 1 open: business=crypto" in log
    assert "connection 1 closed: business=crypto codes=1" in log
    assert re.search(r"sent trade=30 \(\d+/s\) depth=0", log)
    assert "SIGINT received" in log
    assert "cli-secret-key" not in log


@pytest.mark.parametrize("columns", [52, 80, 120])
def test_console_help_keeps_every_example_on_one_line_and_every_flag_whole(columns: int) -> None:
    """``infoway-bridge simulate --help`` at any width prints each example on its own line and never splits a flag."""
    result = subprocess.run(
        [BRIDGE, "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    lines = result.stdout.splitlines()
    for what, flags in EXAMPLES:
        assert f"  # {what}" in lines
        assert f"  infoway-bridge simulate {flags}" in lines
    assert [line for line in lines if line.endswith("-")] == []
    assert "--refuse-handshake is set" in " ".join(result.stdout.split())


async def test_console_start_line_survives_the_key_scrubber() -> None:
    """The start line of ``infoway-bridge simulate`` reads as written, with nothing masked and no key in it."""
    process = await asyncio.create_subprocess_exec(
        BRIDGE, "simulate", "--port=0", "--api-key=start-line-key", "--summary-every=0", stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(WAIT * 2):
            while b"listening on" not in (line := await process.stderr.readline()):
                assert line, "the simulator exited before its start line"
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT * 2):
            await process.communicate()
    text = line.decode()
    assert re.search(
        r"simulator listening on ws://127\.0\.0\.1:\d+/ws \(clients add the query parameters business, one of "
        r"stock/crypto/common/japan/india, and apikey, the key given to the simulator; trade=1000/s, depth=1000/s, "
        r"kline=100/s; seed=\d+\)$",
        text.rstrip(),
    ), text
    assert "***" not in text
    assert "start-line-key" not in text
    assert process.returncode == 0
