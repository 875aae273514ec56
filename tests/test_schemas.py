"""The schemas are the documented contract: complete docs, exact decimals, and BACKWARD evolution.

The compatibility test reads each schema's previous committed version from git and checks,
with Apache avro's schema resolution, that data written with it is readable with the current
one: a consumer upgraded first never breaks on what the bridge wrote before.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import avro.errors
import avro.io
import avro.schema
import fastavro
import pytest
from fastavro.utils import generate_many

from tests.kafka_tools import SCHEMAS

NAMES = ["trade", "depth", "kline", "dead_letter", "gap"]
MARKET = ["trade", "depth", "kline"]
REPO = SCHEMAS.parent


def document(name: str) -> dict[str, Any]:
    """The schema file as JSON."""
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8"))
    return loaded


def walk_fields(schema: Any) -> list[dict[str, Any]]:
    """Every field of every record in the schema, nested records included."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        for field in schema.get("fields", []):
            found.append(field)
            found.extend(walk_fields(field["type"]))
        for key in ("items", "values"):
            if key in schema:
                found.extend(walk_fields(schema[key]))
        if isinstance(schema.get("type"), dict):
            found.extend(walk_fields(schema["type"]))
    elif isinstance(schema, list):
        for branch in schema:
            found.extend(walk_fields(branch))
    return found


def decimals(schema: Any) -> list[dict[str, Any]]:
    """Every decimal logical type in the schema."""
    if isinstance(schema, dict):
        inner = [d for value in schema.values() for d in decimals(value)]
        return ([schema] if schema.get("logicalType") == "decimal" else []) + inner
    if isinstance(schema, list):
        return [d for item in schema for d in decimals(item)]
    return []


@pytest.mark.parametrize("name", NAMES)
def test_every_field_is_documented_in_one_namespace(name: str) -> None:
    """Each schema and each of its fields has a doc, under io.infoway.marketdata."""
    schema = document(name)
    assert schema["namespace"] == "io.infoway.marketdata"
    assert schema["doc"]
    assert all(field.get("doc") for field in walk_fields(schema)), name


@pytest.mark.parametrize("name", NAMES)
def test_no_binary_floats(name: str) -> None:
    """No schema carries float or double anywhere."""
    text = (SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8")
    assert '"float"' not in text
    assert '"double"' not in text


@pytest.mark.parametrize("name", MARKET)
def test_market_records_share_the_contract(name: str) -> None:
    """Every market record has symbol, business, event and receipt times, and provenance."""
    fields = {field["name"]: field for field in document(name)["fields"]}
    for required in ("symbol", "business", "event_time", "received_time", "connection_id", "sequence"):
        assert required in fields, f"{name} lacks {required}"
    assert fields["event_time"]["type"]["logicalType"] == "timestamp-millis"
    assert fields["received_time"]["type"]["logicalType"] == "timestamp-micros"
    for decimal in decimals(document(name)):
        assert (decimal["precision"], decimal["scale"]) == (38, 18)
    assert "decimal(38,18)" in json.dumps(document(name))


def committed_versions(name: str) -> list[str]:
    """The schema's text at each commit that changed it, newest first (empty outside a git checkout)."""
    path = f"schemas/{name}.avsc"
    log = subprocess.run(
        ["git", "log", "--format=%H", "--", path], cwd=REPO, capture_output=True, text=True, check=False
    )
    texts = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:
            texts.append(shown.stdout)
    return texts


def readable_by(writer_text: str, reader_text: str, samples: int = 50) -> None:
    """Data written with the writer schema is read with the reader schema (Apache avro resolution)."""
    writer_json = json.loads(writer_text)
    writer = avro.schema.parse(writer_text)
    reader = avro.schema.parse(reader_text)
    parsed = fastavro.parse_schema(writer_json)
    for datum in generate_many(parsed, samples):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, datum)
        avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(io.BytesIO(out.getvalue())))


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_backward_compatible_with_its_previous_version(name: str) -> None:
    """The current schema reads data written with the previous committed version of it."""
    current = (SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8")
    history = committed_versions(name)
    previous = [text for text in history if json.loads(text) != json.loads(current)]
    baseline = previous[0] if previous else (history[0] if history else current)
    readable_by(baseline, current)


def test_the_compatibility_check_can_fail() -> None:
    """A new field without a default is not BACKWARD compatible, and the check says so."""
    old = (SCHEMAS / "trade.avsc").read_text(encoding="utf-8")
    new = document("trade")
    new["fields"].append({"name": "venue", "type": "string", "doc": "new without default"})
    with pytest.raises(avro.errors.AvroException):
        readable_by(old, json.dumps(new), samples=1)


def test_schemas_are_shipped_in_the_package() -> None:
    """The installed package carries the same schema files as schemas/ (bridge/schemas links there)."""
    packaged = Path(__file__).resolve().parent.parent / "bridge" / "schemas"
    assert sorted(p.name for p in packaged.glob("*.avsc")) == sorted(f"{n}.avsc" for n in NAMES)
