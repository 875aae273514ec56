"""The alert rules of the chart (files/alerts.yaml) under Prometheus' own tool, promtool.

tests/k8s/alerts-test.yaml holds promtool unit tests: for every alert when it fires, with which
labels, when it does not (flapping, below its threshold) and when it resolves, and for every rule
that reads a counter, the first scrape of a label set that did not exist before.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.chart import ALERTS, METRIC, REPO, assert_balanced, exported_series, load_yaml, rules
from tests.k8s.tools import tool

REQUIRED_ALERTS = {
    "InfowayBridgeFeedDown",
    "InfowayBridgeNoRecordsProduced",
    "InfowayBridgeEventLagHigh",
    "InfowayBridgeTerminalVendorError",
    "InfowayBridgeDeadLettersRising",
    "InfowayBridgeReconnectStorm",
    "InfowayBridgeDown",
    "InfowayBridgeProduceFailures",
    "InfowayBridgeGapsReported",
    "InfowayBridgeShardUnowned",
}
UNIT_TESTS = REPO / "tests" / "k8s" / "alerts-test.yaml"
README = REPO / "helm" / "README.md"
COUNTER = re.compile(r"\b(infoway_bridge_[a-z_]+_total)\b")


def unit_tests() -> list[dict[str, Any]]:
    """The promtool test cases of tests/k8s/alerts-test.yaml."""
    cases: list[dict[str, Any]] = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
    return cases


def promtool(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool, capturing its output."""
    return subprocess.run(
        [str(tool("promtool")), *arguments], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_rules_pass_promtool_check_with_lint_fatal() -> None:
    """`promtool check rules --lint-fatal` accepts the file: valid PromQL and templates, no duplicate rules."""
    result = promtool("check", "rules", "--lint-fatal", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    """Every promtool unit test passes against the rules as shipped, annotations aside."""
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    (tmp_path / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text(encoding="utf-8"), encoding="utf-8")
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has an evaluation where it fires and one where it must not (before, flapping or after)."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in unit_tests():
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names <= firing, names - firing
    assert names <= quiet, names - quiet


def test_every_counter_alert_fires_for_a_new_label_set() -> None:
    """Each alert that counts events is tested on a series that appears mid-test (`_x`) and fires with its labels.

    Alerts on the absence of increments (``== 0``, no records produced) are left out: their first
    occurrence is a series that never appears, which their own tests cover.
    """
    for rule in rules():
        counters = set(COUNTER.findall(rule["expr"]))
        if not counters or "== 0" in rule["expr"]:
            continue
        proven = False
        for case in unit_tests():
            new_series = [
                series["series"]
                for series in case["input_series"]
                if series["values"].startswith("_x") and series["series"].split("{")[0] in counters
            ]
            for check in case.get("alert_rule_test", []):
                if check["alertname"] != rule["alert"]:
                    continue
                for expected in check["exp_alerts"]:
                    if expected["exp_labels"].get("severity") != rule["labels"]["severity"]:
                        continue
                    labels = {f'{key}="{value}"' for key, value in expected["exp_labels"].items() if key != "severity"}
                    proven |= any(all(label in series for label in labels) for series in new_series)
        assert proven, f"{rule['alert']} ({rule['labels']['severity']}) is not tested on a new series of {counters}"


def test_every_alert_links_to_its_runbook_entry() -> None:
    """Each rule's runbook_url is helm/README.md#<alert in lower case>, and the README has that heading."""
    headings = set(re.findall(r"^### (InfowayBridge\w+)$", README.read_text(encoding="utf-8"), re.MULTILINE))
    for rule in rules():
        assert rule["annotations"]["runbook_url"] == f"helm/README.md#{rule['alert'].lower()}", rule["alert"]
        assert rule["alert"] in headings, f"no '### {rule['alert']}' in helm/README.md"


def test_alert_rules_are_complete() -> None:
    """Every rule has alert, expr, for, a known severity, a summary, a description and balanced brackets."""
    assert load_yaml(ALERTS)["groups"]
    for rule in rules():
        assert rule["alert"], rule
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]
        assert_balanced(rule["expr"])


def test_required_alerts_exist() -> None:
    """The alerts an operator is promised all exist."""
    names = {rule["alert"] for rule in rules()}
    assert names >= REQUIRED_ALERTS, REQUIRED_ALERTS - names


def test_alerts_use_only_exported_metrics() -> None:
    """Every infoway_bridge_* name in a rule expression is a series the bridge exports."""
    exported = exported_series()
    for rule in rules():
        unknown = set(METRIC.findall(rule["expr"])) - exported
        assert not unknown, f"{rule['alert']}: {unknown}"


def test_terminal_vendor_error_alert_relies_on_the_bridges_own_terminal_count() -> None:
    """The terminal-error alert reads the counter the bridge increments when it stops a connection for good."""
    (rule,) = [rule for rule in rules() if rule["alert"] == "InfowayBridgeTerminalVendorError"]
    assert "infoway_bridge_terminal_errors_total" in rule["expr"]
    assert "code=~" not in rule["expr"], "terminality is decided by the bridge's catalogue, not repeated here"
    assert rule["labels"]["severity"] == "critical"
