"""The Helm chart in helm/infoway-kafka-bridge read as files: values, templates and the dashboard.

The dashboard may only use metrics the bridge exports, the default ``config`` must pass the
bridge's own validation, no secret may be written into the chart, and every ``.Values`` path a
template reads must exist. The alert rules are tested in tests/test_alerts.py; the chart as helm
renders it (lint, kubeconform, the failures at render time) in tests/k8s/test_render.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from bridge.config import parse_config
from tests.k8s.chart import ALERTS, CHART, METRIC, SCRAPE_JOB, assert_balanced, exported_series, load_yaml, rules

TEMPLATES = CHART / "templates"
DASHBOARD = CHART / "files" / "dashboard.json"
ENV = {"INFOWAY_API_KEY": "x"}

VALUES_REFERENCE = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
SECRET_KEYS = {"api_key", "apikey", "apiKey", "password", "token", "key_password"}


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


def template_texts() -> dict[str, str]:
    """Every template of the chart by file name."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(TEMPLATES.iterdir()) if path.is_file()}


# ---------------------------------------------------------------- Chart.yaml and values.yaml


def test_chart_metadata() -> None:
    """Chart.yaml is a Helm 3 (apiVersion v2) chart named infoway-kafka-bridge at version and appVersion 0.1.0."""
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "infoway-kafka-bridge"
    assert str(chart["version"]) == "0.1.0"
    assert str(chart["appVersion"]) == "0.1.0"
    assert chart["description"].strip()
    assert chart["kubeVersion"] == ">=1.27.0-0"


def test_values_run_one_replica_of_the_bridge_image() -> None:
    """The default values run one replica of the infoway-kafka-bridge image and keep every monitoring extra off."""
    default = values()
    assert default["replicas"] == 1
    assert default["image"]["repository"] == "infoway-kafka-bridge"
    assert {"tag", "digest", "pullPolicy"} <= default["image"].keys()
    assert default["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
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
    for secret in ("apiKeySecret", "kafkaSaslPasswordSecret", "kafkaTlsKeyPasswordSecret", "registryPasswordSecret"):
        assert set(default[secret]) == {"name", "key"}, secret
        assert default[secret]["name"] == "", secret  # no placeholder that looks valid


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
    assert re.search(
        r'^\s+bridge\.yaml: \|\n\s+\{\{- include "infoway-kafka-bridge\.config" \. \| nindent 4',
        texts["configmap.yaml"],
        re.MULTILINE,
    )
    assert 'include "infoway-kafka-bridge.secretWiring"' in statefulset
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
    """The ServiceMonitor sets the job by an explicit relabeling to the one job every rule selects on."""
    monitor = template_texts()["servicemonitor.yaml"]
    assert "jobLabel" not in monitor
    assert f"- action: replace\n          targetLabel: job\n          replacement: {SCRAPE_JOB}\n" in monitor
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
    window = r"\[\$__rate_interval\]"
    assert re.search(r"sum by \(topic\) \(rate\(infoway_bridge_records_produced_total\{[^}]*\}" + window, joined)
    assert re.search(r"sum by \(kind\) \(rate\(infoway_bridge_frames_received_total\{[^}]*\}" + window, joined)
    for quantile in ("0.5", "0.9", "0.99"):
        assert re.search(
            rf"histogram_quantile\({quantile}, sum by \(le, stream\) \("
            r"rate\(infoway_bridge_event_lag_seconds_bucket\{[^}]*\}\[\$__rate_interval\]\)\)\)",
            joined,
        ), quantile
    assert "time() - infoway_bridge_last_event_timestamp_seconds" in joined
    for expression in expressions:
        assert_balanced(expression)
        if "histogram_quantile" in expression:
            assert re.search(r"by \([^)]*\ble\b", expression), expression
        for function, window in re.findall(r"\b(rate|irate|increase)\(.*?\[([^\]]+)\]", expression):
            assert window == "$__rate_interval" or function == "increase", expression


def test_dashboard_shards_row_shows_owners_codes_unowned_shards_and_handoffs() -> None:
    """A "Shards" row shows shards and codes owned per pod, replicas per mode, shards nobody owns, and hand-offs."""
    board = dashboard()
    (row,) = [panel for panel in board["panels"] if panel["type"] == "row" and panel["title"] == "Shards"]
    below = [panel for panel in board["panels"] if panel["gridPos"]["y"] == row["gridPos"]["y"] + 1]
    expressions = {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in below}
    joined = {title: "\n".join(exprs) for title, exprs in expressions.items()}
    assert "sum by (namespace, pod) (infoway_bridge_shards_owned{" in joined["Shards owned per pod"]
    codes = joined["Codes owned per pod, replicas by sharding mode"]
    assert "sum by (namespace, pod) (infoway_bridge_codes_owned{" in codes
    assert "count by (namespace, mode, group) (infoway_bridge_sharding_info{" in codes
    unowned = joined["Shards without an owner"]
    assert re.search(r"max by \(namespace, service\) \(infoway_bridge_shards_total\{[^}]*\} > 1\) - on", unowned)
    assert "count by (namespace, service, shard) (infoway_bridge_shard_owned{" in unowned
    assert re.search(r"\bor on \(namespace, service\) max by", unowned), "no owner at all must count every shard"
    handoffs = r"sum by \(direction\) \(increase\(infoway_bridge_shard_handoffs_total\{[^}]*\}\[5m\]\)\)"
    assert re.search(handoffs, joined["Shard hand-offs by direction (5 min)"])
