"""The compiled Avro encoders: byte for byte what fastavro writes, and what Apache avro reads back."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.avro_writer import compile_writer, encode_long
from bridge.framing import SCHEMA_NAMES, _without_logical_types, schema_json

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def datums(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values of a physical-type schema (logical types removed), built from the schema itself."""
    named = {} if named is None else named
    if isinstance(schema, str):
        primitives: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(), "boolean": st.booleans(), "int": INT, "long": LONG, "bytes": st.binary(max_size=40),
            "string": st.text(max_size=30), "double": st.floats(allow_nan=False),
        }  # fmt: skip
        return primitives[schema] if schema in primitives else datums(named[schema], named)
    if isinstance(schema, list):
        return st.one_of(*(datums(branch, named) for branch in schema))
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return st.fixed_dictionaries({field["name"]: datums(field["type"], named) for field in schema["fields"]})
    if kind == "array":
        return st.lists(datums(schema["items"], named), max_size=6)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    return datums(kind, named)


def fastavro_bytes(schema: dict[str, Any], datum: Any) -> bytes:
    """What fastavro writes for ``datum``."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(copy.deepcopy(schema)), datum)
    return buffer.getvalue()


def apache_read(schema: dict[str, Any], encoded: bytes) -> Any:
    """``encoded`` decoded by Apache avro, every byte consumed."""
    parsed = avro.schema.parse(json.dumps(schema))
    stream = io.BytesIO(encoded)
    datum = avro.io.DatumReader(parsed).read(avro.io.BinaryDecoder(stream))
    assert stream.tell() == len(encoded)
    return datum


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_schema_encodes_as_fastavro_does(name: str, data: st.DataObject) -> None:
    """For every shipped schema and any datum the compiled writer writes what fastavro writes; Apache avro reads it."""
    schema = _without_logical_types(schema_json(name))
    datum = data.draw(datums(schema))
    encoded = compile_writer(schema)(datum)
    assert encoded == fastavro_bytes(schema, datum)
    assert apache_read(schema, encoded) == datum


@given(LONG)
def test_longs_are_zigzag_varints(value: int) -> None:
    """Any 64-bit long, small, large or negative, encodes as fastavro's long does (the tail table included)."""
    schema = {"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]}
    assert encode_long(value) == fastavro_bytes(schema, {"n": value})
    assert encode_long(value) == encode_long(value)  # from the table the second time


def test_a_field_added_to_the_schema_is_written_without_code_changes() -> None:
    """An enum field with a default added to kline.avsc is encoded from the schema alone, its default when missing."""
    schema = _without_logical_types(schema_json("kline"))
    schema["fields"].append(
        {"name": "session", "type": {"type": "enum", "name": "Session", "symbols": ["REGULAR", "EXTENDED"]},
         "default": "REGULAR"}
    )  # fmt: skip
    datum: dict[str, Any] = {field["name"]: None for field in schema["fields"] if field["name"] != "session"}
    datum.update(
        symbol="BTCUSDT", business="crypto", interval="1m", open_time=1, event_time=1, received_time=2,
        open=b"\x01", high=b"\x02", low=b"\x00", close=b"\x01", volume=b"\x05", amount=b"\x06",
        connection_id="c", sequence=9, source="WS",
    )  # fmt: skip
    write = compile_writer(schema)
    assert write(datum) == fastavro_bytes(schema, {**datum, "session": "REGULAR"})
    assert write({**datum, "session": "EXTENDED"}) == fastavro_bytes(schema, {**datum, "session": "EXTENDED"})
    assert apache_read(schema, write(datum))["session"] == "REGULAR"


def test_a_value_that_matches_no_union_branch_is_refused() -> None:
    """A datum whose value fits none of a union's branches raises instead of writing something else."""
    schema = {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "long"]}]}
    with pytest.raises(ValueError, match="matches no branch"):
        compile_writer(schema)({"u": "text"})
