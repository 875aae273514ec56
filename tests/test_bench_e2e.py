"""A smoke run of bench/bench_e2e.py, so the end-to-end benchmark cannot rot (it is not run in full here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kafka
def test_a_tiny_load_lands_whole_and_is_reported(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Seconds at 300 trades/s through the bridge, the bridge with two workers and the naive bridge: nothing lost;
    the workers' CPU counted; JSON, table and plot written."""
    command = [
        sys.executable, str(ROOT / "bench" / "bench_e2e.py"), "--bootstrap", kafka_bootstrap, "--loads", "300",
        "--seconds", "2", "--warmup", "1", "--no-ceiling", "--out", str(tmp_path),
        "--contenders", "bridge,bridge-w2,naive",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "e2e.json").read_text())
    assert [run["contender"] for run in report["runs"]] == ["bridge", "bridge-w2", "naive"]
    for run in report["runs"]:
        assert run["lost"] == 0, run
        assert run["landed_per_s"] > 0, run
        assert run["cpu_us_per_record"] > 0, run
    assert report["runs"][0]["ack_ms"]["p99"] is not None
    assert report["runs"][1]["ack_ms"]["p99"] is not None, "the workers' histograms reach the one endpoint"
    # Two workers beside their parent: more resident memory than one process, measured over the tree.
    assert report["runs"][1]["peak_rss_mb"] > report["runs"][0]["peak_rss_mb"]
    assert "| 300 trades (300) | bridge |" in (tmp_path / "e2e.md").read_text()
    assert (tmp_path / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
