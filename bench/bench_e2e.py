#!/usr/bin/env python3
"""End to end: the simulator at fixed offered loads into the bridge into a local broker, against baselines.

Every contender is a real process on 127.0.0.1, started afresh for each load with a fresh
simulator (``python -m bridge.simulator``) and its own topics on one broker (scripts/kafka-local on
free ports, unless ``KAFKA_BOOTSTRAP_SERVERS`` is set):

* ``bridge``: ``infoway-bridge run`` as a user runs it (disk spool with fsync, exactly-once);
* ``bridge-w2``: the same with ``--workers 2`` (one process per core, each half the shards);
* ``bridge-alo``: the same with ``delivery.mode: at-least-once`` (idempotent, no transactions);
* ``naive``: bench/naive_bridge.py, the bridge written the obvious way (trade loads only);
* ``ceiling``: Kafka's own ``ProducerPerformance`` (the broker's jars plus kafka-tools) at the
  bridge's record size, acks=all, idempotent, flat out; and the simulator into a client that only
  counts frames (bench/bench_simulator.py's), flat out.

The simulator is told to stop after ``rate * (warm-up + window + 2 s)`` pushes, so after the run
the contender is stopped (it flushes) and every push sent must be in Kafka: ``lost`` is the
difference. Within the measured window (after the warm-up): records landed per second (counted
in Kafka with read_committed by their timestamp, the receipt time), the contender's CPU per record
(utime + stime from /proc), receipt-to-ack and event lag p50/p99/p99.9 (from the bridge's
Prometheus histograms, interpolated within buckets), peak RSS, and the CPU of the simulator and the
broker. A load is *sustained* when landed/s is within 2 % of offered and nothing is lost.

Writes ``bench/results/e2e.json``, ``e2e.md`` and ``e2e.png`` (or ``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2e_processes import (
    KAFKA_VERSION,
    KEY,
    Broker,
    Load,
    broker,
    cpu_seconds,
    free_port,
    parse_loads,
    peak_rss_mb,
    pushes_sent,
    simulator,
    stop,
    wait_until,
)
from e2e_report import markdown, plot, ratios
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import bucket_quantile

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOOLS_JAR = (
    Path.home() / ".m2/repository/org/apache/kafka/kafka-tools" / KAFKA_VERSION / f"kafka-tools-{KAFKA_VERSION}.jar"
)
QUANTILES = (0.5, 0.99, 0.999)
SUSTAINED_SHARE = 0.98


# -- contenders ------------------------------------------------------------------------------------

BRIDGES: dict[str, tuple[list[str], list[str]]] = {
    "bridge": ([], []),
    "bridge-w2": (["--workers", "2"], []),
    "bridge-alo": ([], ["delivery.mode=at-least-once"]),
}
"""The bridge contenders: extra ``run`` arguments and config settings (``--set``) beside the user's."""


def codes(count: int) -> list[str]:
    """The subscribed codes (the counting client of bench_simulator uses the same names)."""
    return [f"C{index:04d}USDT" for index in range(count)]


def bridge_config(
    directory: Path, sim_port: int, bootstrap: str, metrics_port: int, load: Load, count: int, overrides: list[str]
) -> Path:
    """A configuration as a user would write it (disk spool, exactly-once, the load's streams), then ``overrides``."""
    streams = ["trade"] + (["depth"] if load.depth else []) + (["kline"] if load.klines else [])
    run = uuid.uuid4().hex[:8]
    document: dict[str, Any] = {
        "source": {
            "url": f"ws://127.0.0.1:{sim_port}/ws",
            "api_key": KEY,
            "frame_limit": 600,
            "subscriptions": [
                {"business": "crypto", "codes": codes(count), "streams": streams, "kline_types": ["1m", "5m"]}
            ],
        },
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": {name: f"bench.{run}.{name}" for name in ("trade", "depth", "kline", "dead_letter", "offsets")},
        },
        "metrics": {"host": "127.0.0.1", "port": metrics_port},
        "spool": {"dir": str(directory / "spool")},
        "delivery": {"transactional_id": f"bench.{run}"},
    }
    for setting in overrides:
        dotted, _, text = setting.partition("=")
        *parents, leaf = dotted.split(".")
        node: dict[str, Any] = document
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = json.loads(text) if text[:1].isdigit() or text in ("true", "false", "null") else text
    path = directory / "bridge.yaml"
    path.write_text(json.dumps(document), encoding="utf-8")  # JSON is YAML
    return path


def scrape(port: int) -> dict[str, dict[float, float]]:
    """The bridge's lag histograms for trades, as cumulative buckets by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    found: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("infoway_bridge_pipeline_latency_seconds", "infoway_bridge_event_lag_seconds"):
            continue
        buckets = found.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("stream") == "trade":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return found


def _quantiles_ms(before: dict[float, float], after: dict[float, float]) -> dict[str, float | None]:
    window = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    out: dict[str, float | None] = {}
    for quantile in QUANTILES:
        value, _ = bucket_quantile(window, quantile)
        out[f"p{quantile * 100:g}"] = None if value is None else round(value * 1000, 2)
    return out


def count_landed(bootstrap: str, topics: list[str], start_ms: int, end_ms: int) -> tuple[int, int]:
    """Records in ``topics`` (read_committed), in all and with a timestamp in [start_ms, end_ms), read with kcat."""
    total = in_window = 0
    for topic in topics:
        result = subprocess.run(
            ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%T\n",
             "-X", "isolation.level=read_committed"],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        if result.returncode != 0 and "Unknown topic" not in result.stderr:
            raise RuntimeError(f"kcat failed on {topic}: {result.stderr.strip()}")
        for line in result.stdout.split():
            total += 1
            in_window += start_ms <= int(line) < end_ms
    return total, in_window


def _profile(pid: int, args: argparse.Namespace, name: str) -> subprocess.Popen[bytes] | None:
    """With ``--profile DIR``: py-spy samples the contender over the window into DIR/<name>.txt (collapsed stacks)."""
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(args.seconds)), "--rate", "200"]
    command += ["--format", "raw", "--output", str(args.profile / f"{name}.txt"), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_contender(kind: str, load: Load, args: argparse.Namespace, kafka: Broker) -> dict[str, Any]:
    """One contender at one load: start, warm up, measure the window, drain, count (see the module docstring)."""
    pushes_for = args.warmup + args.seconds + 2
    with simulator(load, pushes_for) as (sim, sim_port), tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        directory = Path(tmp)
        metrics_port = free_port()
        if kind in BRIDGES:
            overrides = [*args.set, *BRIDGES[kind][1]]
            config = bridge_config(directory, sim_port, kafka.bootstrap, metrics_port, load, args.codes, overrides)
            topics = [f"{json.loads(config.read_text())['kafka']['topics'][s]}" for s in ("trade", "depth", "kline")]
            command = [str(BIN / "infoway-bridge"), "run", "--config", str(config), "--summary-interval=0"]
            command += ["--log-level=WARNING", *BRIDGES[kind][0]]
        else:
            topics = [f"bench.{uuid.uuid4().hex[:8]}.naive"]
            url = f"ws://127.0.0.1:{sim_port}/ws?business=crypto&apikey={KEY}"
            command = [sys.executable, str(ROOT / "bench" / "naive_bridge.py"), url, kafka.bootstrap, topics[0]]
            command.append(",".join(codes(args.codes)))
        process = subprocess.Popen(command, cwd=directory)
        try:
            wait_until(lambda: process.poll() is not None or pushes_sent(sim_port) > 0, 60, f"{kind}: no pushes")
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {process.returncode} before the window")
            time.sleep(args.warmup)
            pids = {"contender": process.pid, "simulator": sim.pid, "broker": kafka.pid}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None}
            lag_before = scrape(metrics_port) if kind in BRIDGES else {}
            profiler = _profile(process.pid, args, f"{kind}-{load.name.replace(' ', '-').replace('/', '-')}")
            start = time.time()
            time.sleep(args.seconds)
            end = time.time()
            if profiler is not None:
                profiler.wait(timeout=30)
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items() if pid is not None}
            lag_after = scrape(metrics_port) if kind in BRIDGES else {}
            expected = sum(int(rate * pushes_for) for rate in (load.trades, load.depth, load.klines))
            # Wait until the simulator has sent everything (or stopped sending: a contender that fell behind).
            previous, settled = -1, time.monotonic()
            while (sent := pushes_sent(sim_port)) < expected and time.monotonic() - settled < 3:
                if sent != previous:
                    previous, settled = sent, time.monotonic()
                time.sleep(0.2)
            rss = peak_rss_mb(process.pid)
            time.sleep(1)
        finally:
            stop(process, timeout=60)
    total, landed = count_landed(kafka.bootstrap, topics, int(start * 1000), int(end * 1000))
    window = end - start
    result: dict[str, Any] = {
        "contender": kind,
        "load": load.name,
        "offered_per_s": load.total,
        "landed_per_s": round(landed / window),
        "sent": sent,
        "lost": sent - total,
        "cpu_us_per_record": round(cpu["contender"] / max(landed, 1) * 1e6, 1),
        "contender_cores": round(cpu["contender"] / window, 2),
        "simulator_cores": round(cpu["simulator"] / window, 2),
        "broker_cores": round(cpu["broker"] / window, 2) if "broker" in cpu else None,
        "peak_rss_mb": round(rss, 1),
    }
    result["sustained"] = result["lost"] == 0 and landed / window >= SUSTAINED_SHARE * load.total
    if kind in BRIDGES:
        for name, label in (
            ("infoway_bridge_pipeline_latency_seconds", "ack"),
            ("infoway_bridge_event_lag_seconds", "lag"),
        ):
            result[f"{label}_ms"] = _quantiles_ms(lag_before.get(name, {}), lag_after.get(name, {}))
    print(json.dumps(result), flush=True)
    return result


# -- ceilings --------------------------------------------------------------------------------------


def record_size() -> int:
    """Bytes of the bridge's trade record on the wire: key, value and headers (one sample)."""
    from decimal import Decimal

    from bridge.records import Provenance, Side, Stream, TradeRecord
    from bridge.serialize import RecordSerializer, TopicMap

    now = datetime.now(UTC)
    provenance = Provenance("crypto", "crypto-0#1@20261202T120000Z-000000", 123456, now)
    trade = TradeRecord(
        "C0001USDT", now, Decimal("63039.12"), Decimal("0.0153"), Decimal("964.4985"), Side.BUY, None, provenance
    )
    message = RecordSerializer(TopicMap({Stream.TRADE: "t"}, "d")).serialize(trade)
    return len(message.value) + len(message.key or b"") + sum(len(k) + len(v) for k, v in message.headers)


def producer_performance(kafka: Broker, size: int, records: int) -> dict[str, Any] | None:
    """Kafka's ProducerPerformance flat out at ``size`` bytes a record, acks=all, idempotent."""
    java = shutil.which("java")
    if java is None or not TOOLS_JAR.is_file():
        fetch = ["mvn", "-q", "-B", "dependency:get", f"-Dartifact=org.apache.kafka:kafka-tools:{KAFKA_VERSION}"]
        subprocess.run([*fetch, "-Dtransitive=false"], check=False, capture_output=True)
    if java is None or not TOOLS_JAR.is_file():
        print("no ceiling: java or kafka-tools (Maven Central) is missing")
        return None
    classpath = f"{ROOT / '.cache' / 'kafka' / KAFKA_VERSION / 'lib'}/*:{TOOLS_JAR}"
    topic = f"bench.{uuid.uuid4().hex[:8]}.perf"
    command = [
        java, "-Xmx512m", "-cp", classpath, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
        "--num-records", str(records), "--record-size", str(size), "--throughput", "-1", "--producer-props",
        f"bootstrap.servers={kafka.bootstrap}", "acks=all", "enable.idempotence=true", "linger.ms=5",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output, _ = process.communicate(timeout=300)
    final = [line for line in output.splitlines() if "records sent" in line][-1]
    # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, p50 ms 50th, ..."
    parts = [part.strip() for part in final.split(",")]
    return {
        "records_per_s": round(float(parts[1].split()[0])),
        "record_bytes": size,
        "latency_ms": {"avg": float(parts[2].split()[0]), "p50": float(parts[4].split()[0]),
                       "p99": float(parts[6].split()[0]), "p99.9": float(parts[7].split()[0])},
    }  # fmt: skip


def simulator_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """The simulator flat out (offered 400,000/s) into bench_simulator's counting client."""
    load = Load("flat out", 400_000)
    with simulator(load, 3600) as (sim, port):
        client = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bench_simulator.py"), "client", str(port), "500", "1.5", "5"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdout is not None
        client.stdout.readline()  # "window"
        before = cpu_seconds(sim.pid)
        result: dict[str, Any] = json.loads(client.stdout.readline())
        result["simulator_cores"] = round((cpu_seconds(sim.pid) - before) / 5, 2)
        client.wait(timeout=10)
    return {"frames_per_s": round(result["frames_per_second"]), "simulator_cores": result["simulator_cores"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every contender at every load, then the ceilings; write JSON, Markdown and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="5000,10000,20000,40000,mix:10000/2000/1000",
                        help="trades/s, or mix:trades/depth/klines (default: %(default)s)")  # fmt: skip
    parser.add_argument("--codes", type=int, default=50, help="crypto codes subscribed (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20, help="measured window (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before the window (default: %(default)s)")
    parser.add_argument(
        "--contenders", default="bridge,naive", help=f"of {', '.join([*BRIDGES, 'naive'])} (default: %(default)s)"
    )
    parser.add_argument("--bootstrap", help="an existing broker (default: KAFKA_BOOTSTRAP_SERVERS, else our own)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a bridge config key, e.g. delivery.mode=at-least-once",
    )
    parser.add_argument("--profile", type=Path, help="py-spy each contender over its window into this folder")
    parser.add_argument("--no-ceiling", action="store_true", help="skip ProducerPerformance and the counting client")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="(default: bench/results)")
    args = parser.parse_args(argv)
    loads = parse_loads(args.loads)
    kinds = args.contenders.split(",")
    unknown = [kind for kind in kinds if kind not in BRIDGES and kind != "naive"]
    if unknown:
        parser.error(f"--contenders: unknown {', '.join(unknown)}; expected some of {', '.join([*BRIDGES, 'naive'])}")
    with broker(args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as kafka:
        conditions = (
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({platform.machine()}), simulator, "
            f"broker and contender on one host; broker {kafka.described}; {args.codes} crypto codes, "
            f"{args.warmup:g} s warm-up, {args.seconds:g} s window; bridge: disk spool (fsync), exactly-once; "
            f"acks=all, idempotent; load average {os.getloadavg()[0]:.1f} at the start"
            + (f"; bridge settings {', '.join(args.set)}" if args.set else "")
        )
        report: dict[str, Any] = {"conditions": conditions, "runs": []}
        for load in loads:
            for kind in kinds:
                if kind == "naive" and (load.depth or load.klines):
                    continue  # the naive bridge writes trades only
                report["runs"].append(run_contender(kind, load, args, kafka))
        if not args.no_ceiling:
            report["producer_performance"] = producer_performance(kafka, record_size(), 1_000_000)
            report["simulator_ceiling"] = simulator_ceiling(args)
    report["ratios"] = ratios(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e2e.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = markdown(report)
    (args.out / "e2e.md").write_text(table, encoding="utf-8")
    plot(report, args.out / "e2e.png")
    print(table)
    return report


if __name__ == "__main__":
    main()
