"""Where scripts/chart-tools put helm, kubeconform, promtool, the schemas and the CRDs.

`make test` runs ``scripts/chart-tools install`` first. A test that needs a tool fails (never
skips) when it is missing, naming the command that installs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.k8s.chart import REPO

MANIFEST = REPO / ".cache" / "tools" / "chart-tools.json"


def setting(name: str) -> str:
    """One entry of .cache/tools/chart-tools.json: a tool's path, or the Kubernetes version checked against."""
    installed: dict[str, str] = json.loads(MANIFEST.read_text(encoding="utf-8")) if MANIFEST.exists() else {}
    if name not in installed:
        pytest.fail(f"{name} is not installed: run `make chart-tools` (scripts/chart-tools install)", pytrace=False)
    return installed[name]


def tool(name: str) -> Path:
    """The path of one installed chart tool."""
    path = Path(setting(name))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make chart-tools` (scripts/chart-tools install)", pytrace=False)
    return path
