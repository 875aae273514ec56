"""The README's Python snippet decodes every trade the bridge wrote, in every wire format, as Apache avro does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.consumers.conftest import Produced
from tests.consumers.snippets import snippets
from tests.consumers.tools import REPO


@pytest.mark.parametrize("wire_format", ["raw", "single-object", "confluent"])
def test_the_readme_python_snippet_decodes_every_trade(
    wire_format: str,
    produced: Callable[[str, str | None], Produced],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``decode_trade`` from the README gives, for every trade value, what the reference reading of it gives."""
    registry = request.getfixturevalue("schema_registry") if wire_format == "confluent" else None
    data = produced(wire_format, registry)
    monkeypatch.chdir(REPO)
    namespace: dict[str, Any] = {}
    exec(snippets()["python"], namespace)  # noqa: S102 (the README's snippet is what this test runs)
    records = data.records["trade"]
    assert records
    assert [namespace["decode_trade"](record.raw_value, wire_format) for record in records] == [
        record.value for record in records
    ]
