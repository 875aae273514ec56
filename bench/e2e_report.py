"""The end-to-end benchmark's report (bench/bench_e2e.py): the Markdown table, the ratios and the plot."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any


def _ms(values: dict[str, float | None] | None) -> str:
    if not values:
        return "-"
    return " / ".join("-" if values[key] is None else f"{values[key]:g}" for key in ("p50", "p99", "p99.9"))


def markdown(report: dict[str, Any]) -> str:
    """The table and the ratios, in Markdown."""
    lines = [
        f"Conditions: {report['conditions']}",
        "",
        "| load (offered/s) | contender | landed/s | sustained | lost | CPU µs/record | cores | "
        "receipt-to-ack ms p50 / p99 / p99.9 | event lag ms p50 / p99 / p99.9 | peak RSS MB | simulator cores | "
        "broker cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {row['load']} ({row['offered_per_s']:,}) | {row['contender']} | {row['landed_per_s']:,} | "
        f"{'yes' if row['sustained'] else 'no'} | {row['lost']:,} | {row['cpu_us_per_record']:g} | "
        f"{row['contender_cores']:.2f} | {_ms(row.get('ack_ms'))} | {_ms(row.get('lag_ms'))} | "
        f"{row['peak_rss_mb']:.0f} | {row['simulator_cores']:.2f} | {row['broker_cores'] or '-'} |"
        for row in report["runs"]
    )
    lines.append("")
    lines.extend(f"- {line}" for line in report["ratios"])
    return "\n".join(lines) + "\n"


def ratios(report: dict[str, Any]) -> list[str]:
    """What the run says, as ratios against the baselines run in it."""
    runs = report["runs"]
    out: list[str] = []

    def best(kind: str) -> int:
        return max(
            (r["offered_per_s"] for r in runs if r["contender"] == kind and r["sustained"] and "trades" in r["load"]),
            default=0,
        )

    bridges = list(dict.fromkeys(r["contender"] for r in runs if r["contender"].startswith("bridge")))
    naive_best = best("naive")
    bridge_best = max((best(kind) for kind in bridges), default=0)
    if naive_best:
        out.extend(
            f"highest sustained trade load: {kind} {best(kind):,}/s, naive {naive_best:,}/s "
            f"({best(kind) / naive_best:.2f}x)"
            for kind in bridges
        )
    for load in dict.fromkeys(r["load"] for r in runs):
        pair = {r["contender"]: r for r in runs if r["load"] == load}
        for kind in bridges:
            if kind in pair and "naive" in pair:
                share = pair[kind]["cpu_us_per_record"] / pair["naive"]["cpu_us_per_record"]
                out.append(f"{load}: {kind} CPU per record {share:.2f}x the naive bridge's")
    perf = report.get("producer_performance")
    if perf and bridge_best:
        times = perf["records_per_s"] / bridge_best
        out.append(
            f"ProducerPerformance flat out: {perf['records_per_s']:,}/s, {times:.1f}x the bridge's best sustained"
        )
    sim = report.get("simulator_ceiling")
    if sim:
        frames, cores = sim["frames_per_s"], sim["simulator_cores"]
        out.append(f"simulator into a counting client flat out: {frames:,} frames/s on {cores} cores")
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Landed/s and receipt-to-ack p99 against offered load (trade loads), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    kinds = list(dict.fromkeys(r["contender"] for r in report["runs"]))
    styles = ("o-", "^-", "v-", "s--")
    for kind, style in zip(kinds, styles, strict=False):
        rows = [r for r in report["runs"] if r["contender"] == kind and "trades" in r["load"]]
        if rows:
            left.plot([r["offered_per_s"] for r in rows], [r["landed_per_s"] for r in rows], style, label=kind)
    offered = sorted({r["offered_per_s"] for r in report["runs"] if "trades" in r["load"]})
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.set(xlabel="offered trades/s", ylabel="landed in Kafka/s", title="throughput")
    left.legend()
    for kind, style in zip(kinds, styles, strict=False):
        rows = [r for r in report["runs"] if r["contender"] == kind and "trades" in r["load"] and r.get("ack_ms")]
        rows = [r for r in rows if r["ack_ms"]["p99"]]
        if rows:
            right.plot([r["offered_per_s"] for r in rows], [r["ack_ms"]["p99"] for r in rows], style, label=kind)
    right.set(xlabel="offered trades/s", ylabel="ms", yscale="log", title="receipt-to-ack p99")
    right.legend()
    figure.suptitle("\n".join(textwrap.wrap(report["conditions"], 160)), fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
