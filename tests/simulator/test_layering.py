"""What the simulator's modules may import, checked on their source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bridge.simulator

PACKAGE = Path(bridge.simulator.__file__).parent
PURE = ("market.py", "replies.py", "gateway.py")


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, absolute names (``from bridge import x`` counts as ``bridge.x``)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_simulator_uses_only_the_protocol_and_records_of_the_project(path: Path) -> None:
    """The simulator stands apart from the bridge: of the project it imports only the vocabulary and argparse types."""
    project = {name for name in imported_modules(path) if name == "bridge" or name.startswith("bridge.")}
    allowed = ("bridge.arguments", "bridge.protocol", "bridge.records", "bridge.redact", "bridge.simulator")
    assert all(name.startswith(allowed) for name in project), project


@pytest.mark.parametrize("name", PURE)
def test_market_session_and_gateway_do_no_io(name: str) -> None:
    """The generators, the frame logic and the gateway rules are pure: no event loop, no sockets, no clock module."""
    forbidden = {"asyncio", "websockets", "socket", "time"}
    imported = {module.split(".")[0] for module in imported_modules(PACKAGE / name)}
    assert not imported & forbidden
