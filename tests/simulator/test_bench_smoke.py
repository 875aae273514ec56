"""A short run of ``bench/bench_simulator.py``, so the benchmark cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_simulator.py"


def test_the_simulator_benchmark_runs_and_counts_frames(tmp_path: Path) -> None:
    """A tiny run (no baseline) measures the client's ceiling and the simulator, and writes its JSON."""
    output = tmp_path / "bench.json"
    arguments = ["--rates=2000", "--seconds=0.5", "--warmup=0.3", "--codes=10", "--baseline=none", f"--json={output}"]
    result = subprocess.run(
        [sys.executable, str(BENCH), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "| ours | 2,000 |" in result.stdout
    results = json.loads(output.read_text())
    assert results["ceiling"]["frames_per_second"] > 0
    assert results["ours"]["2000.0"]["frames_per_second"] > 0
    assert results["baseline"] == {}
