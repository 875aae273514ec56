"""What the chart tests share: the chart's paths, its files parsed, and PromQL helpers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics

REPO = Path(__file__).resolve().parent.parent.parent
CHART = REPO / "helm" / "infoway-kafka-bridge"
ALERTS = CHART / "files" / "alerts.yaml"
METRIC = re.compile(r"infoway_bridge_[a-z_]+")
SCRAPE_JOB = "infoway-kafka-bridge"


def exported_series() -> frozenset[str]:
    """Every series name the bridge exposes: counters with ``_total``, histograms with their three suffixes."""
    registry = CollectorRegistry()
    BridgeMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return frozenset(names)


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


def rules() -> list[dict[str, Any]]:
    """Every rule of every group of files/alerts.yaml."""
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def strip_strings(expression: str) -> str:
    """A PromQL expression with its string literals emptied, so their contents cannot unbalance brackets."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)


def assert_balanced(expression: str) -> None:
    """Brackets of a PromQL expression pair up, outside string literals."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in strip_strings(expression):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack, f"unbalanced {char!r} in {expression}"
            assert stack.pop() == pairs[char], f"unbalanced {char!r} in {expression}"
    assert not stack, f"unclosed {stack} in {expression}"
