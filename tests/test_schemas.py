"""The schemas are the documented contract: complete docs, exact decimals, and BACKWARD evolution.

The compatibility tests read every committed version of each schema from git and check, with
Apache avro's schema resolution and a comparison of logical types, that each version reads data
written with the one before it: a consumer upgraded first never breaks on what the bridge wrote
before. The one exception is a deliberate break, which opens a new schema line (namespace) and is
recorded in ``DELIBERATE_BREAKS``; within each line the rule holds again.
"""

from __future__ import annotations

import io
import itertools
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
    """Each schema and each of its fields has a doc, under one io.infoway.marketdata line."""
    schema = document(name)
    assert schema["namespace"].startswith("io.infoway.marketdata")
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
    assert fields["received_time"]["type"]["logicalType"] == "timestamp-millis"
    for decimal in decimals(document(name)):
        assert (decimal["precision"], decimal["scale"]) == (38, 18)
    assert "decimal(38,18)" in json.dumps(document(name))


def committed_versions(name: str) -> list[str]:
    """The schema's text at each commit that changed it, newest first (empty outside a git checkout).

    Only the first-parent chain: a side branch merged in is seen as the merge, so the versions form
    one line of history (two branches' versions interleaved by date would seem to go back and forth).
    """
    path = f"schemas/{name}.avsc"
    log = subprocess.run(
        ["git", "log", "--first-parent", "--format=%H", "--", path],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    texts = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:
            texts.append(shown.stdout)
    return texts


def logical_types(schema: Any, path: str = "") -> dict[str, tuple[object, ...]]:
    """Each field's logical type (with a decimal's precision and scale) by its dotted path, nested fields included."""
    found: dict[str, tuple[object, ...]] = {}
    if isinstance(schema, list):
        for branch in schema:
            found.update(logical_types(branch, path))
    elif isinstance(schema, dict):
        if "logicalType" in schema:
            found[path] = (schema["logicalType"], schema.get("precision"), schema.get("scale"))
        for field in schema.get("fields", []):
            found.update(logical_types(field["type"], f"{path}.{field['name']}".lstrip(".")))
        for key in ("items", "values"):
            if key in schema:
                found.update(logical_types(schema[key], path))
        if isinstance(schema.get("type"), dict | list):
            found.update(logical_types(schema["type"], path))
    return found


def incompatibilities(writer_text: str, reader_text: str, samples: int = 50) -> list[str]:
    """Why data written with the writer schema would not be read, or be misread, with the reader schema.

    Three checks: the record's full name (a reader resolving by name refuses another one), Apache
    avro's schema resolution on generated data (with the names aligned, so it judges the fields),
    and each field's logical type: timestamp-micros read as timestamp-millis resolves fine and is
    1000 times off, so a changed unit or decimal scale counts as a break although the bytes decode.
    """
    writer_json, reader_json = json.loads(writer_text), json.loads(reader_text)
    reasons = []
    writer_name = f"{writer_json.get('namespace', '')}.{writer_json['name']}"
    reader_name = f"{reader_json.get('namespace', '')}.{reader_json['name']}"
    if writer_name != reader_name:
        reasons.append(f"renamed {writer_name} -> {reader_name}")
    aligned = json.dumps({**writer_json, "namespace": reader_json.get("namespace"), "name": reader_json["name"]})
    writer, reader = avro.schema.parse(aligned), avro.schema.parse(reader_text)
    parsed = fastavro.parse_schema(json.loads(aligned))
    try:
        for datum in generate_many(parsed, samples):
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, datum)
            avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(io.BytesIO(out.getvalue())))
    except avro.errors.AvroException as exc:
        reasons.append(f"unreadable: {str(exc).splitlines()[0]}")
    before, after = logical_types(writer_json), logical_types(reader_json)
    reasons += [
        f"{path}: {before[path]} -> {after[path]}"
        for path in before.keys() & after.keys()
        if before[path] != after[path]
    ]
    return reasons


# Every deliberate break of BACKWARD compatibility, by the schema line (namespace) it left and the one it
# opened. Within a line each change must stay BACKWARD compatible; a new line is only allowed here, with why.
DELIBERATE_BREAKS = {
    ("io.infoway.marketdata", "io.infoway.marketdata.v2"): (
        "issue 12: Flink SQL misread timestamp-micros 1000 times and cannot read an Avro enum as STRING, so "
        "every instant became timestamp-millis and Trade.side a string"
    ),
}


def line_of(text: str) -> str:
    """The schema line of a schema text: its namespace."""
    namespace: str = json.loads(text)["namespace"]
    return namespace


def history(name: str) -> list[str]:
    """The schema's versions oldest first, the working tree's last when it differs from the newest commit."""
    versions = committed_versions(name)[::-1]
    current = (SCHEMAS / f"{name}.avsc").read_text(encoding="utf-8")
    if not versions or json.loads(versions[-1]) != json.loads(current):
        versions.append(current)
    return versions


@pytest.mark.parametrize("name", NAMES)
def test_every_version_reads_the_one_before_it_within_its_line(name: str) -> None:
    """Each version of a schema, the working tree's included, reads data of the version before it in the same line."""
    versions = history(name)
    for older, newer in itertools.pairwise(versions):
        if line_of(older) == line_of(newer):
            assert incompatibilities(older, newer) == [], f"{name}: {line_of(newer)} broke BACKWARD compatibility"


@pytest.mark.parametrize("name", NAMES)
def test_a_new_schema_line_is_a_recorded_break_and_really_breaks(name: str) -> None:
    """Moving a schema to a new namespace is allowed only as a recorded deliberate break that is a real one."""
    versions = history(name)
    for older, newer in itertools.pairwise(versions):
        step = (line_of(older), line_of(newer))
        if step[0] != step[1]:
            assert step in DELIBERATE_BREAKS, f"{name}: {step} is not recorded in DELIBERATE_BREAKS"
            assert incompatibilities(older, newer), f"{name}: {step} is compatible, it needs no new line"


def test_every_schema_is_in_the_newest_line() -> None:
    """All schemas move to a new line together, so one namespace names the version a consumer reads."""
    newest = list(DELIBERATE_BREAKS)[-1][1]
    assert {document(name)["namespace"] for name in NAMES} == {newest}


def test_the_compatibility_check_can_fail() -> None:
    """A new field without a default, and a timestamp's unit changed, are each reported as a break."""
    old = (SCHEMAS / "trade.avsc").read_text(encoding="utf-8")
    new = document("trade")
    new["fields"].append({"name": "venue", "type": "string", "doc": "new without default"})
    assert [reason.split(":")[0] for reason in incompatibilities(old, json.dumps(new), samples=1)] == ["unreadable"]
    coarser = old.replace('"timestamp-millis"', '"timestamp-micros"')
    assert sorted(incompatibilities(old, coarser, samples=1)) == [
        "event_time: ('timestamp-millis', None, None) -> ('timestamp-micros', None, None)",
        "received_time: ('timestamp-millis', None, None) -> ('timestamp-micros', None, None)",
    ]


def test_schemas_are_shipped_in_the_package() -> None:
    """The installed package carries the same schema files as schemas/ (bridge/schemas links there)."""
    packaged = Path(__file__).resolve().parent.parent / "bridge" / "schemas"
    assert sorted(p.name for p in packaged.glob("*.avsc")) == sorted(f"{n}.avsc" for n in NAMES)
