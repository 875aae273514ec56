"""The Helm chart in helm/infoway-kafka-bridge, checked without a cluster, a network or (mostly) a helm binary.

The dashboard and the alert rules may only use metrics the bridge exports, the default ``config``
must pass the bridge's own validation, no API key may be written into the chart, and every
``.Values`` path a template reads must exist. When a ``helm`` binary is on PATH, the chart is
also rendered and the rendered objects checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from bridge.config import parse_config
from bridge.metrics import BridgeMetrics

REPO = Path(__file__).resolve().parent.parent
HELM = REPO / "helm"
CHART = HELM / "infoway-kafka-bridge"
TEMPLATES = CHART / "templates"
DASHBOARD = CHART / "files" / "dashboard.json"
ALERTS = CHART / "files" / "alerts.yaml"
ENV = {"INFOWAY_API_KEY": "x"}

METRIC = re.compile(r"infoway_bridge_[a-z_]+")
VALUES_REFERENCE = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
REQUIRED_ALERTS = {
    "InfowayBridgeFeedDown",
    "InfowayBridgeEventLagHigh",
    "InfowayBridgeTerminalVendorError",
    "InfowayBridgeDeadLettersRising",
    "InfowayBridgeReconnectStorm",
    "InfowayBridgeDown",
    "InfowayBridgeProduceFailures",
    "InfowayBridgeGapsReported",
}
SECRET_KEYS = {"api_key", "apikey", "apiKey", "password", "token", "key_password"}
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


def values() -> dict[str, Any]:
    """The chart's default values."""
    return load_yaml(CHART / "values.yaml")


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard as parsed JSON."""
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    board = dashboard()
    expressions = [target["expr"] for panel in panels(board["panels"]) for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            expressions.append(query["query"] if isinstance(query, dict) else query)
    return expressions


def rules() -> list[dict[str, Any]]:
    """Every rule of every group of files/alerts.yaml."""
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def rules_named(name: str) -> list[dict[str, Any]]:
    """The rules of one alert name (an alert may have several rules)."""
    found = [rule for rule in rules() if rule.get("alert") == name]
    assert found, f"no rule for {name}"
    return found


def template_texts() -> dict[str, str]:
    """Every template of the chart by file name."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(TEMPLATES.iterdir()) if path.is_file()}


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


def matcher_regexes(expression: str, label: str, operator: str) -> list[str]:
    """The regexes of every ``label=~"..."`` (or ``!~``) matcher in an expression."""
    return re.findall(rf'\b{label}\s*{re.escape(operator)}\s*"([^"]*)"', expression)


# ---------------------------------------------------------------- Chart.yaml and values.yaml


def test_chart_metadata() -> None:
    """Chart.yaml is a Helm 3 (apiVersion v2) chart named infoway-kafka-bridge at version and appVersion 0.1.0."""
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "infoway-kafka-bridge"
    assert str(chart["version"]) == "0.1.0"
    assert str(chart["appVersion"]) == "0.1.0"
    assert chart["description"].strip()


def test_values_run_one_replica_of_the_bridge_image() -> None:
    """The default values run one replica of the infoway-kafka-bridge image and keep every monitoring extra off."""
    default = values()
    assert default["replicas"] == 1
    assert default["image"]["repository"] == "infoway-kafka-bridge"
    assert {"tag", "pullPolicy"} <= default["image"].keys()
    assert default["serviceMonitor"]["enabled"] is False
    assert default["prometheusRule"]["enabled"] is False
    assert default["grafanaDashboard"]["enabled"] is False
    assert default["grafanaDashboard"]["label"] == "grafana_dashboard"
    assert default["grafanaDashboard"]["labelValue"] == "1"


def test_values_config_is_accepted_by_the_bridge() -> None:
    """The chart's default config passes the bridge's own loader, with the key taken from INFOWAY_API_KEY."""
    config = parse_config(values()["config"], ENV)
    assert config.source.api_key.get_secret_value() == "x"
    assert config.metrics.port == 9464
    assert config.metrics.host == "0.0.0.0"  # noqa: S104  (the probes reach the pod IP, not loopback)


def test_values_config_references_the_key_and_the_secret_supplies_it() -> None:
    """source.api_key is the ${INFOWAY_API_KEY} reference and the key's Secret is named in values, never given."""
    default = values()
    assert default["config"]["source"]["api_key"] == "${INFOWAY_API_KEY}"
    assert set(default["apiKeySecret"]) == {"name", "key"}
    assert default["apiKeySecret"]["name"] == ""  # required at install, no placeholder that looks valid


def test_grace_period_leaves_time_to_flush() -> None:
    """terminationGracePeriodSeconds exceeds the flush timeout plus the 10 s the connections may take to close."""
    default = values()
    config = parse_config(default["config"], ENV)
    assert default["terminationGracePeriodSeconds"] > config.kafka.flush_timeout_seconds + 10


def test_probes_hit_the_health_endpoints_on_the_metrics_port() -> None:
    """Liveness GETs /healthz and readiness GETs /readyz, both on the port named metrics, with timeouts set."""
    default = values()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        settings = default[probe]
        assert settings["httpGet"] == {"path": path, "port": "metrics"}
        assert settings["timeoutSeconds"] >= 1
        assert settings["periodSeconds"] * settings["failureThreshold"] >= 30
    assert default["service"]["port"] == 9464


def test_pod_is_locked_down_and_sized() -> None:
    """The container runs as non-root, read-only, without capabilities, and has requests and limits."""
    default = values()
    context = default["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert default["podSecurityContext"]["runAsNonRoot"] is True
    assert isinstance(default["podSecurityContext"]["runAsUser"], int)
    assert default["podSecurityContext"]["runAsUser"] > 0
    resources = default["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


# ---------------------------------------------------------------- templates


def test_every_values_path_a_template_reads_exists() -> None:
    """Every .Values.a.b path used in a template exists in values.yaml, so no template reads a value nobody can set."""
    default = values()
    missing = []
    for name, text in template_texts().items():
        for match in VALUES_REFERENCE.finditer(text):
            node: Any = default
            for key in match.group(1).strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{name}: .Values{match.group(1)}")
                    break
                node = node[key]
    assert not missing, missing


def test_template_actions_are_balanced() -> None:
    """Every template's {{ }} delimiters pair up and each if/with/range/define block has its end."""
    for name, text in template_texts().items():
        assert text.count("{{") == text.count("}}"), name
        actions = re.findall(r"\{\{-?\s*(/\*|[a-z]+)", text)
        opened = sum(action in ("if", "with", "range", "define", "block") for action in actions)
        assert opened == actions.count("end"), f"{name}: {opened} blocks opened, {actions.count('end')} ended"


def test_files_read_by_templates_exist() -> None:
    """Every .Files.Get path in a template names a file of the chart."""
    paths = [path for text in template_texts().values() for path in re.findall(r'\.Files\.Get\s+"([^"]+)"', text)]
    assert set(paths) == {"files/alerts.yaml", "files/dashboard.json"}
    for path in paths:
        assert (CHART / path).is_file(), path


def test_statefulset_runs_the_bridge_on_its_configmap() -> None:
    """The StatefulSet runs `infoway-bridge run --config ... --log-format json` on the ConfigMap's bridge.yaml."""
    texts = template_texts()
    statefulset = texts["statefulset.yaml"]
    assert "kind: StatefulSet" in statefulset
    command = re.search(r"command:\n((?:\s+- .+\n)+)", statefulset)
    assert command is not None
    argv = [line.strip()[2:] for line in command.group(1).splitlines()]
    assert argv == ["infoway-bridge", "run", "--config", "/etc/infoway-bridge/bridge.yaml", "--log-format", "json"]
    assert "mountPath: /etc/infoway-bridge\n" in statefulset
    assert re.search(r"^\s+bridge\.yaml: \|\n\s+\{\{- toYaml \.Values\.config", texts["configmap.yaml"], re.MULTILINE)
    key_env = re.search(r"- name: INFOWAY_API_KEY\n\s+valueFrom:\n\s+secretKeyRef:\n(.*\n.*\n)", statefulset)
    assert key_env is not None
    assert ".Values.apiKeySecret.name" in key_env.group(1)
    assert ".Values.apiKeySecret.key" in key_env.group(1)
    assert "terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}" in statefulset


def test_monitoring_objects_are_optional_and_built_from_the_files() -> None:
    """ServiceMonitor, PrometheusRule and dashboard ConfigMap render only when enabled, from the chart's files."""
    texts = template_texts()
    gates = {
        "servicemonitor.yaml": ".Values.serviceMonitor.enabled",
        "prometheusrule.yaml": ".Values.prometheusRule.enabled",
        "dashboard-configmap.yaml": ".Values.grafanaDashboard.enabled",
    }
    for name, gate in gates.items():
        assert texts[name].startswith("{{- if " + gate + " }}"), name
    assert "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor" in texts["servicemonitor.yaml"]
    assert "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule" in texts["prometheusrule.yaml"]
    assert '.Files.Get "files/alerts.yaml"' in texts["prometheusrule.yaml"]
    assert '.Files.Get "files/dashboard.json"' in texts["dashboard-configmap.yaml"]
    assert (
        "{{ .Values.grafanaDashboard.label }}: {{ .Values.grafanaDashboard.labelValue | quote }}"
        in (texts["dashboard-configmap.yaml"])
    )


def test_scrape_job_name_matches_the_alert_rules() -> None:
    """The ServiceMonitor takes the job from a label whose fixed value is the job every rule selects on."""
    texts = template_texts()
    job_label = re.search(r"jobLabel: (\S+)", texts["servicemonitor.yaml"])
    assert job_label is not None
    assert f"{job_label.group(1)}: {SCRAPE_JOB}\n" in texts["_helpers.tpl"]
    jobs = {job for rule in rules() for job in re.findall(r'\bjob\s*=\s*"([^"]*)"', rule["expr"])}
    assert jobs == {SCRAPE_JOB}


def test_no_api_key_in_the_chart() -> None:
    """No template, values or rule file carries a key: no apikey= query, no Secret object, secrets only as ${VAR}."""
    files = [*TEMPLATES.iterdir(), CHART / "values.yaml", ALERTS, DASHBOARD]
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert "apikey=" not in text.lower(), file
        assert not re.search(r"^kind:\s*Secret\b", text, re.MULTILINE), file
        for value in re.findall(r"^\s*api_key:\s*(.+?)\s*(?:#.*)?$", text, re.MULTILINE):
            assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value), f"{file}: api_key {value!r}"

    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, item in node.items():
                yield from walk(item, f"{path}.{key}")
                if key in SECRET_KEYS:
                    yield f"{path}.{key}", item
        elif isinstance(node, list):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}.{index}")

    for path, value in walk(values(), ""):
        assert value is None or re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", str(value)), f"{path}: {value!r}"


# ---------------------------------------------------------------- dashboard


def test_dashboard_is_a_grafana_dashboard_with_panels() -> None:
    """files/dashboard.json is JSON with a title, uid, schemaVersion near 39 and panels that all have queries."""
    board = dashboard()
    assert board["title"]
    assert board["uid"] == "infoway-kafka-bridge"
    assert 36 <= board["schemaVersion"] <= 41
    graphs = [panel for panel in panels(board["panels"]) if panel["type"] != "row"]
    assert len(graphs) >= 13
    ids = [panel["id"] for panel in panels(board["panels"])]
    assert len(ids) == len(set(ids))
    for panel in graphs:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_variables() -> None:
    """The dashboard takes its Prometheus data source from ${datasource} and offers a business variable."""
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    business = variables["business"]
    assert business["type"] == "query"
    assert business["definition"] == "label_values(infoway_bridge_frames_received_total, business)"
    assert business["datasource"]["uid"] == "${datasource}"


def test_dashboard_uses_only_exported_metrics() -> None:
    """Every infoway_bridge_* name in a dashboard query is a series the bridge exports."""
    exported = exported_series()
    for expression in dashboard_expressions():
        unknown = set(METRIC.findall(expression)) - exported
        assert not unknown, f"{unknown} in {expression}"


def test_dashboard_shows_every_metric_family() -> None:
    """Every metric the bridge exports is on the dashboard (histograms through their buckets)."""
    used = {name for expression in dashboard_expressions() for name in METRIC.findall(expression)}
    wanted = {name for name in exported_series() if not name.endswith(("_sum", "_count"))}
    assert wanted <= used, wanted - used


def test_dashboard_queries_have_the_asked_for_shapes() -> None:
    """The key panels query what they claim: rates per topic and kind, lag quantiles by le and stream, feed age."""
    expressions = dashboard_expressions()
    joined = "\n".join(expressions)
    assert re.search(r"sum by \(topic\) \(rate\(infoway_bridge_records_produced_total\{[^}]*\}\[1m\]\)\)", joined)
    assert re.search(r"sum by \(kind\) \(rate\(infoway_bridge_frames_received_total\{[^}]*\}\[1m\]\)\)", joined)
    for quantile in ("0.5", "0.9", "0.99"):
        assert re.search(
            rf"histogram_quantile\({quantile}, sum by \(le, stream\) \("
            r"rate\(infoway_bridge_event_lag_seconds_bucket\{[^}]*\}\[5m\]\)\)\)",
            joined,
        ), quantile
    assert "time() - infoway_bridge_last_event_timestamp_seconds" in joined
    for expression in expressions:
        assert_balanced(expression)
        if "histogram_quantile" in expression:
            assert re.search(r"by \([^)]*\ble\b", expression), expression


# ---------------------------------------------------------------- alert rules


def test_alert_rules_are_complete() -> None:
    """Every rule of files/alerts.yaml has alert, expr, for, a known severity, and a summary and description."""
    document = load_yaml(ALERTS)
    assert document["groups"]
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
    (rule,) = rules_named("InfowayBridgeTerminalVendorError")
    assert "infoway_bridge_terminal_errors_total" in rule["expr"]
    assert "code=~" not in rule["expr"], "terminality is decided by the bridge's catalogue, not repeated here"
    assert rule["labels"]["severity"] == "critical"


def test_event_lag_alert_leaves_out_klines() -> None:
    """The event-lag alert takes the p99 of trade and depth only, since a kline's event time is its bar's start."""
    (rule,) = rules_named("InfowayBridgeEventLagHigh")
    assert "histogram_quantile(0.99" in rule["expr"]
    assert "infoway_bridge_event_lag_seconds_bucket" in rule["expr"]
    assert matcher_regexes(rule["expr"], "stream", "=~") == ["trade|depth"]
    assert re.search(r"by \([^)]*\ble\b", rule["expr"])


def test_feed_down_covers_connections_and_records() -> None:
    """FeedDown fires for a business without an open connection and for a running process that produces nothing."""
    expressions = [rule["expr"] for rule in rules_named("InfowayBridgeFeedDown")]
    assert any("infoway_bridge_connection_up" in expression and "business" in expression for expression in expressions)
    assert any(
        "infoway_bridge_records_produced_total" in expression and f'up{{job="{SCRAPE_JOB}"}}' in expression
        for expression in expressions
    )


def test_down_alert_is_up_equals_zero() -> None:
    """InfowayBridgeDown is the scrape job's up == 0."""
    (rule,) = rules_named("InfowayBridgeDown")
    assert " ".join(rule["expr"].split()) == f'up{{job="{SCRAPE_JOB}"}} == 0'


# ---------------------------------------------------------------- rendering, where a helm binary exists


@pytest.mark.skipif(shutil.which("helm") is None, reason="no helm binary on PATH; the static checks above still ran")
def test_helm_template_renders_a_deployable_release() -> None:
    """`helm template` renders every object with the extras on, and refuses a missing Secret name or a key literal."""
    helm = shutil.which("helm")
    assert helm is not None
    base = [helm, "template", "bridge", str(CHART), "--namespace", "market"]
    enabled = ["--set", "apiKeySecret.name=infoway-api-key", "--set", "serviceMonitor.enabled=true"]
    enabled += ["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"]
    rendered = subprocess.run([*base, *enabled], capture_output=True, text=True, timeout=120, check=True).stdout
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}
    assert set(objects) >= {"StatefulSet", "Service", "ConfigMap", "ServiceMonitor", "PrometheusRule"}
    statefulset = objects["StatefulSet"]["spec"]
    assert statefulset["replicas"] == 1
    container = statefulset["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["infoway-bridge", "run"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    assert objects["PrometheusRule"]["spec"] == load_yaml(ALERTS)
    configmaps = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap"]
    data = {key: value for configmap in configmaps for key, value in configmap["data"].items()}
    assert parse_config(yaml.safe_load(data["bridge.yaml"]), ENV).metrics.port == 9464
    assert json.loads(data["infoway-kafka-bridge.json"]) == dashboard()

    missing = subprocess.run(base, capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode != 0
    assert "apiKeySecret.name is required" in missing.stderr
    literal = [*base, "--set", "apiKeySecret.name=s", "--set", "config.source.api_key=not-a-reference"]
    refused = subprocess.run(literal, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert "never the key itself" in refused.stderr
