"""The chart as helm 3.16 renders it: lint, offline schema validation, and the values it refuses.

Each realistic values file of tests/k8s/values/ is linted with ``helm lint --strict``, rendered
with ``helm template``, and every manifest validated by ``kubeconform -strict`` against the
Kubernetes JSON schemas of the minor the API-server check runs (PyPI's kubernetes-validate) and
the prometheus-operator CRDs. The rendered bridge.yaml goes through the bridge's own loader.
Bad values must fail at render time with a message that names the value.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.app import transactional_stem
from bridge.config import BridgeConfig, parse_config
from bridge.config_sharding import ShardingMode
from bridge.protocol.shards import static_shards
from tests.k8s.chart import CHART, REPO, SCRAPE_JOB, load_yaml
from tests.k8s.tools import setting, tool

VALUES = REPO / "tests" / "k8s" / "values"
VARIANTS = ("default", "monitoring", "sasl-ssl", "replicas")
REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


def helm(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run helm, capturing its output."""
    return subprocess.run([str(tool("helm")), *arguments], capture_output=True, text=True, timeout=120, check=False)


def template(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart as release "bridge" in namespace "market", at the checked Kubernetes version."""
    version = setting("kubernetes_version")
    return helm("template", "bridge", str(CHART), "--namespace", "market", "--kube-version", version, *arguments)


def rendered(variant: str, *arguments: str) -> list[dict[str, Any]]:
    """The objects of one values file of tests/k8s/values/, rendered."""
    result = template("--values", str(VALUES / f"{variant}.yaml"), *arguments)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def one(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    """The one object of a kind (whose name ends with ``suffix``)."""
    (found,) = [item for item in objects if item["kind"] == kind and item["metadata"]["name"].endswith(suffix)]
    return found


def bridge_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The bridge.yaml of the rendered ConfigMap, parsed."""
    document = yaml.safe_load(one(objects, "ConfigMap", "-config")["data"]["bridge.yaml"])
    assert isinstance(document, dict)
    return document


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The bridge container of the rendered StatefulSet."""
    (bridge,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert isinstance(bridge, dict)
    return bridge


def with_files(node: Any, folder: Path) -> Any:
    """A config tree whose TLS file paths point at empty files in ``folder`` (the loader checks they exist)."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str):
                (folder / Path(value).name).touch()
                result[key] = str(folder / Path(value).name)
            else:
                result[key] = with_files(value, folder)
        return result
    return node


@pytest.fixture(scope="module")
def variants() -> dict[str, list[dict[str, Any]]]:
    """Every realistic values file, rendered once for the module."""
    return {variant: rendered(variant) for variant in VARIANTS}


@pytest.mark.parametrize("variant", [*VARIANTS, "no-security-context"])
def test_helm_lint_strict_passes(variant: str) -> None:
    """`helm lint --strict` passes for every values file (even the one without security contexts, refused later)."""
    result = helm("lint", "--strict", str(CHART), "--values", str(VALUES / f"{variant}.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_is_valid_for_kubeconform_strict(tmp_path: Path) -> None:
    """kubeconform -strict accepts every object of every variant, CRD kinds included, and skips none."""
    files = []
    for variant in VARIANTS:
        result = template("--values", str(VALUES / f"{variant}.yaml"))
        assert result.returncode == 0, result.stderr
        files.append(tmp_path / f"{variant}.yaml")
        files[-1].write_text(result.stdout, encoding="utf-8")
    schemas, crds = tool("kubernetes_schemas"), tool("crd_schemas")
    result = subprocess.run(
        [str(tool("kubeconform")), "-strict", "-summary", "-output", "json",
         "-schema-location", f"{schemas}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json",
         "-schema-location", f"{crds}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json",
         *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0, summary
    kinds = {item["kind"] for objects in [rendered(v) for v in ("monitoring", "replicas")] for item in objects}
    assert kinds >= {"StatefulSet", "Service", "ConfigMap", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"}
    assert summary["valid"] >= 4 * 5


def test_rendered_config_of_every_variant_is_accepted_by_the_bridge(
    variants: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Each variant's bridge.yaml passes the bridge's loader with the environment its pod gets."""
    for variant, objects in variants.items():
        environment = {item["name"]: item.get("value", "from-a-secret") for item in container(objects)["env"]}
        config = parse_config(with_files(bridge_config(objects), tmp_path), environment)
        assert config.source.api_key.get_secret_value() == "from-a-secret", variant
        assert config.metrics.port == 9464, variant


def test_every_secret_comes_from_a_secret(variants: dict[str, list[dict[str, Any]]]) -> None:
    """API key, SASL password, TLS key password and registry password are ${VAR}s filled by secretKeyRef env."""
    objects = variants["sasl-ssl"]
    config = bridge_config(objects)
    references = {
        "INFOWAY_API_KEY": config["source"]["api_key"],
        "KAFKA_SASL_PASSWORD": config["kafka"]["sasl"]["password"],
        "KAFKA_TLS_KEY_PASSWORD": config["kafka"]["tls"]["key_password"],
        "SCHEMA_REGISTRY_PASSWORD": config["serialization"]["registry"]["password"],
    }
    assert references == {name: f"${{{name}}}" for name in references}
    env = {item["name"]: item for item in container(objects)["env"]}
    assert env["INFOWAY_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "infoway-api-key", "key": "token"}}
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-user-infoway-bridge"
    assert env["KAFKA_TLS_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "key-password"
    assert env["SCHEMA_REGISTRY_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "schema-registry-user"
    assert not [item for item in objects if item["kind"] == "Secret"]
    assert "KAFKA_SASL_PASSWORD" not in {item["name"] for item in container(variants["default"])["env"]}


def test_pod_writes_only_to_its_volumes(variants: dict[str, list[dict[str, Any]]]) -> None:
    """Read-only root, non-root UID 10001; /tmp and the spool are the writable mounts, and HOME/TMPDIR point there."""
    for variant in ("default", "replicas"):
        objects = variants[variant]
        pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
        bridge = container(objects)
        assert bridge["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        writable = {mount["mountPath"] for mount in bridge["volumeMounts"] if not mount.get("readOnly")}
        assert writable == {"/tmp", "/var/lib/infoway-bridge"}, variant  # noqa: S108 (the pod's own emptyDir)
        env = {item["name"]: item.get("value") for item in bridge["env"]}
        assert env["HOME"] in writable
        assert env["TMPDIR"] in writable
    default_volumes = {
        volume["name"]: volume
        for volume in one(variants["default"], "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    }
    assert default_volumes["spool"] == {"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}}
    persistent = one(variants["replicas"], "StatefulSet")["spec"]
    assert "spool" not in {volume["name"] for volume in persistent["template"]["spec"]["volumes"]}
    (claim,) = persistent["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"


def test_objects_carry_the_recommended_labels_and_the_budget(variants: dict[str, list[dict[str, Any]]]) -> None:
    """Every object has the recommended labels; the PodDisruptionBudget selects the pods, lets unhealthy ones go."""
    for objects in variants.values():
        for item in objects:
            assert item["metadata"]["labels"].keys() >= RECOMMENDED_LABELS, item["kind"]
    budget = one(variants["replicas"], "PodDisruptionBudget")["spec"]
    pod_labels = one(variants["replicas"], "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["maxUnavailable"] == 1
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    image = container(variants["replicas"])["image"]
    assert image == f"registry.example.com/data/infoway-kafka-bridge@sha256:{'0123456789abcdef' * 4}"


def test_service_monitor_names_the_job_and_rules_link_to_the_runbook(variants: dict[str, list[dict[str, Any]]]) -> None:
    """The ServiceMonitor relabels job first, user relabelings after; runbook links get the base URL."""
    objects = variants["monitoring"]
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["relabelings"][0] == {"action": "replace", "targetLabel": "job", "replacement": SCRAPE_JOB}
    assert endpoint["metricRelabelings"][0]["regex"] == "python_gc_.*"
    urls = [
        rule["annotations"]["runbook_url"]
        for group in one(objects, "PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
    ]
    base = "https://git.example.com/data/infoway-kafka-bridge/blob/main/helm/README.md#"
    assert urls
    assert all(url.startswith(base) for url in urls), urls
    default_rules = rendered("default", "--set", "prometheusRule.enabled=true")
    assert one(default_rules, "PrometheusRule")["spec"] == load_yaml(CHART / "files" / "alerts.yaml")


def pod_config(objects: list[dict[str, Any]], ordinal: int) -> BridgeConfig:
    """The bridge's loaded configuration as pod ``ordinal`` of the StatefulSet sees it (POD_NAME its name)."""
    name = f"{one(objects, 'StatefulSet')['metadata']['name']}-{ordinal}"
    environment = {item["name"]: item.get("value", "from-a-secret") for item in container(objects)["env"]}
    return parse_config(bridge_config(objects), {**environment, "POD_NAME": name})


def notes(*arguments: str, tmp_path: Path) -> str:
    """NOTES.txt as helm renders it for the default values plus ``arguments``.

    `helm template` leaves NOTES.txt out, so a copy of the chart has it as an ordinary template; it
    is no YAML, and --debug prints it before failing on that.
    """
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "templates" / "notes.yaml")
    result = subprocess.run(
        [str(tool("helm")), "template", "bridge", str(chart), "--namespace", "market",
         "--kube-version", setting("kubernetes_version"), "--values", str(VALUES / "default.yaml"),
         "--show-only", "templates/notes.yaml", "--debug", *arguments],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    text = result.stdout.split("# Source: infoway-kafka-bridge/templates/notes.yaml\n", 1)
    assert len(text) == 2, result.stdout + result.stderr
    return text[1]


def test_one_replica_is_unsharded(variants: dict[str, list[dict[str, Any]]]) -> None:
    """One pod (sharding auto) renders no sharding section and no POD_NAME: the bridge owns every code."""
    objects = variants["default"]
    assert "sharding" not in bridge_config(objects)
    assert "POD_NAME" not in {item["name"] for item in container(objects)["env"]}
    assert pod_config(objects, 0).sharding.mode is ShardingMode.NONE


def test_several_replicas_share_the_shards_through_a_group(variants: dict[str, list[dict[str, Any]]]) -> None:
    """replicas 3 (sharding auto) is group mode: one group and control topic per release, the pod name as member."""
    objects = variants["replicas"]
    assert one(objects, "StatefulSet")["spec"]["replicas"] == 3
    assert bridge_config(objects)["sharding"] == {
        "mode": "group",
        "shards": 12,
        "instance": "${POD_NAME}",
        "group": "market.bridge-infoway-kafka-bridge",
        "control_topic": "infoway.bridge.shards.market.bridge-infoway-kafka-bridge",
        "session_timeout_seconds": 10,
        "handoff_timeout_seconds": 15,
    }
    env = {item["name"]: item for item in container(objects)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    configs = [pod_config(objects, ordinal) for ordinal in range(3)]
    assert [config.sharding.instance for config in configs] == [f"bridge-infoway-kafka-bridge-{i}" for i in range(3)]
    assert {transactional_stem(config) for config in configs} == {"infoway-bridge.market.bridge-infoway-kafka-bridge"}
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_static_mode_counts_the_replicas_and_reads_the_index_from_the_pod_name() -> None:
    """sharding.mode static renders count = replicas; pod -i has index i, and the pods cover every shard once."""
    objects = rendered("replicas", "--set", "sharding.mode=static")
    sharding = bridge_config(objects)["sharding"]
    assert sharding["mode"] == "static"
    assert sharding["count"] == 3
    assert "index" not in sharding
    owned: list[int] = []
    for ordinal in range(3):
        config = pod_config(objects, ordinal).sharding
        assert config.static_index == ordinal
        assert config.count == 3
        owned.extend(static_shards(config.static_index, config.count, config.shards))
    assert sorted(owned) == list(range(12))


def test_notes_describe_the_shards_instead_of_warning(tmp_path: Path) -> None:
    """NOTES.txt no longer warns about replicas: it names the mode, group, control topic and the hand-off's cost."""
    several = notes("--set", "replicas=3", tmp_path=tmp_path / "group")
    assert "WARNING" not in several
    assert "Sharding: group (auto: replicas > 1)" in several
    assert "Consumer group market.bridge-infoway-kafka-bridge" in several
    assert "control topic infoway.bridge.shards.market.bridge-infoway-kafka-bridge (12 partitions" in several
    assert "What a hand-off costs" in several
    static = notes("--set", "replicas=3", "--set", "sharding.mode=static", tmp_path=tmp_path / "static")
    assert "Sharding: static" in static
    assert "There is no failover" in static
    single = notes(tmp_path=tmp_path / "single")
    assert "WARNING" not in single
    assert "Sharding: none" in single


def test_shard_unowned_threshold_comes_from_values(variants: dict[str, list[dict[str, Any]]]) -> None:
    """prometheusRule.shardUnownedFor becomes InfowayBridgeShardUnowned's `for`; every other rule is as shipped."""

    def fors(objects: list[dict[str, Any]]) -> dict[str, str]:
        spec = one(objects, "PrometheusRule")["spec"]
        return {rule["alert"] + rule["labels"]["severity"]: rule["for"] for g in spec["groups"] for rule in g["rules"]}

    shipped = fors(variants["monitoring"])
    assert shipped["InfowayBridgeShardUnownedcritical"] == "2m"
    changed = fors(rendered("monitoring", "--set", "prometheusRule.shardUnownedFor=5m"))
    assert changed == {**shipped, "InfowayBridgeShardUnownedcritical": "5m"}


def test_a_quoted_numeric_tag_is_kept() -> None:
    """image.tag "1.10" renders as 1.10 (the schema refuses the unquoted number, see below)."""
    objects = rendered("default", "--set-string", "image.tag=1.10")
    assert container(objects)["image"] == "infoway-kafka-bridge:1.10"
    assert one(objects, "StatefulSet")["metadata"]["labels"]["app.kubernetes.io/version"] == "1.10"


REFUSED = {
    "literal SASL password (schema)": (
        ["--set-json", 'config.kafka.sasl={"username":"u","password":"hunter2"}'],
        "config.kafka.sasl.password: Does not match pattern",
    ),
    "literal SASL password (template)": (
        ["--skip-schema-validation", "--set-json", 'config.kafka.sasl={"username":"u","password":"hunter2"}'],
        "config.kafka.sasl.password must be a reference such as ${KAFKA_SASL_PASSWORD}, never the secret itself",
    ),
    "literal registry password": (
        ["--set-json", 'config.serialization={"format":"confluent","registry":{"url":"http://r","password":"pw"}}'],
        "config.serialization.registry.password: Does not match pattern",
    ),
    "literal API key": (["--set", "config.source.api_key=abc123"], "config.source.api_key: Does not match pattern"),
    "SASL without any password": (
        ["--set-json", 'config.kafka.sasl={"username":"u"}', "--set", "config.kafka.security_protocol=SASL_SSL"],
        "config.kafka.sasl has no password: name the Secret holding it in kafkaSaslPasswordSecret.name",
    ),
    "a Secret for a section that is absent": (
        ["--set", "kafkaTlsKeyPasswordSecret.name=tls"],
        "kafkaTlsKeyPasswordSecret.name is set but config.kafka.tls is not",
    ),
    "grace period below the flush timeout": (
        ["--set", "terminationGracePeriodSeconds=30", "--set", "config.kafka.flush_timeout_seconds=25"],
        "terminationGracePeriodSeconds (30) must exceed config.kafka.flush_timeout_seconds (25) plus 10 s",
    ),
    "metrics port 0": (["--set", "config.metrics.port=0"], "config.metrics.port: Must be greater than or equal to 1"),
    "service port too large": (["--set", "service.port=70000"], "service.port: Must be less than or equal to 65535"),
    "unknown pull policy": (
        ["--set", "image.pullPolicy=Sometimes"],
        "image.pullPolicy: image.pullPolicy must be one of",
    ),
    "a typo at the top level": (["--set", "replica=2"], "Additional property replica is not allowed"),
    "loopback metrics host": (["--set", "config.metrics.host=127.0.0.1"], "config.metrics.host is a loopback address"),
    "several replicas without shards": (
        ["--set", "replicas=3", "--set", "sharding.mode=none"],
        "replicas is 3 but sharding.mode is none: every pod would subscribe every code",
    ),
    "an unknown sharding mode": (["--set", "sharding.mode=dynamic"], "sharding.mode: sharding.mode must be one of"),
    "static mode with more pods than shards": (
        ["--set", "replicas=5", "--set", "sharding.mode=static", "--set", "sharding.shards=4"],
        "sharding.mode static with replicas (5) above sharding.shards (4)",
    ),
    "a sharding key the chart sets, in config": (
        ["--set", "config.sharding.group=mine"],
        "config.sharding.group is set by the chart (from sharding.group)",
    ),
    "a per-pod transactional id when sharded": (
        ["--set", "replicas=3", "--set", "config.delivery.transactional_id=bridge-${HOSTNAME}"],
        "config.delivery.transactional_id references ${HOSTNAME}, which differs from pod to pod",
    ),
    "a transactional id from the downward API when sharded": (
        [
            "--set",
            "replicas=3",
            "--set",
            "config.delivery.transactional_id=${MY_POD}",
            "--set-json",
            'env=[{"name":"MY_POD","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]',
        ],
        "config.delivery.transactional_id references ${MY_POD}, which differs from pod to pod",
    ),
    "a shard alert quicker than a hand-off": (
        ["--set", "replicas=3", "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.shardUnownedFor=50s"],
        "prometheusRule.shardUnownedFor (50s) must exceed sharding.sessionTimeoutSeconds (10) plus "
        "sharding.handoffTimeoutSeconds (15) plus one scrape (serviceMonitor.interval, 30s)",
    ),
    "a budget that lets every pod go": (
        ["--set", "replicas=3", "--set", "podDisruptionBudget.maxUnavailable=3"],
        "podDisruptionBudget.maxUnavailable (3) lets a drain evict all 3 pods at once",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_bad_values_fail_at_render_time_naming_the_value(case: str) -> None:
    """Each bad value stops `helm template` with a message naming that value."""
    arguments, message = REFUSED[case]
    result = template("--values", str(VALUES / "default.yaml"), *arguments)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr


def test_unquoted_numeric_tag_and_missing_key_secret_are_refused(tmp_path: Path) -> None:
    """`tag: 1.10` in a values file (YAML's number 1.1) and an unnamed API-key Secret both fail, named."""
    numeric = tmp_path / "numeric-tag.yaml"
    numeric.write_text("image:\n  tag: 1.10\n", encoding="utf-8")
    result = template("--values", str(VALUES / "default.yaml"), "--values", str(numeric))
    assert result.returncode != 0
    assert "image.tag: Invalid type. Expected: string, given: number" in result.stderr
    result = template()
    assert result.returncode != 0
    assert "apiKeySecret.name is required" in result.stderr
