"""Schemas and how values are framed on the wire: the schema files, the wire formats, the headers.

No records here: what names a value's schema (a prefix in the value, headers beside it) and which
headers a message carries (``serialization.headers``: ``lean`` by default, ``full`` for all).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import fastavro

from bridge.avro_writer import Writer, compile_writer

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


class HeaderSet(enum.StrEnum):
    """Which headers a market record carries (``serialization.headers``); dead letters and gaps always carry theirs.

    The headers cost more than the value (six of them were 149 bytes beside a 74-byte trade), for
    the broker, the network and every consumer, so by default a record carries only what a
    consumer needs and cannot find in the value or the topic.
    """

    LEAN = "lean"
    """``stream`` and ``wire-format``; in raw framing also ``schema`` and ``schema-fingerprint``, the
    only way a raw value names its writer schema (single-object and confluent values carry it in
    their prefix)."""
    FULL = "full"
    """Also ``business`` and ``received-at`` (both in the value; the receipt time is the Kafka
    timestamp too), and the schema headers in every framing (``schema-id`` in confluent)."""


class WireFormat(enum.StrEnum):
    """How a value is framed on the wire (``serialization.format``)."""

    RAW = "raw"
    """Plain Avro binary: the reader must know the schema."""
    SINGLE_OBJECT = "single-object"
    """Avro's single-object encoding: 0xC3 0x01 and the schema's CRC-64-AVRO fingerprint, then the body."""
    CONFLUENT = "confluent"
    """Magic byte 0 and the registry's 4-byte schema id, then the body."""


SCHEMA_NAMES = ("trade", "depth", "kline", "dead_letter", "gap")


@cache
def schema_json(name: str) -> dict[str, Any]:
    """``schemas/<name>.avsc`` as written (what a registry should store), from the installed package."""
    text = resources.files("bridge").joinpath("schemas", f"{name}.avsc").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``schemas/<name>.avsc`` parsed by fastavro, for writing."""
    parsed = fastavro.parse_schema(schema_json(name))
    if not isinstance(parsed, dict):
        raise TypeError(f"schemas/{name}.avsc is not a record schema")
    return parsed


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_logical_types(value) for key, value in node.items() if key not in _LOGICAL_KEYS}
    if isinstance(node, list):
        return [_without_logical_types(item) for item in node]
    return node


_LOGICAL_KEYS = frozenset({"logicalType", "precision", "scale"})


@cache
def writer_schema(name: str) -> dict[str, Any]:
    """The schema with its logical types removed, parsed by fastavro: what :func:`avro_writer` is tested against.

    The bytes are the same (a decimal is its unscaled integer in two's complement, a timestamp
    its epoch count); converting before encoding, exactly and once, keeps the exactness rule in
    our hands.
    """
    parsed = fastavro.parse_schema(_without_logical_types(schema_json(name)))
    if not isinstance(parsed, dict):
        raise TypeError(f"schemas/{name}.avsc is not a record schema")
    return parsed


@cache
def avro_writer(name: str) -> Writer:
    """The encoder of schema ``name``'s values, compiled from its schema with the logical types removed."""
    return compile_writer(_without_logical_types(schema_json(name)))


def single_object_header(schema: dict[str, Any]) -> bytes:
    """The Avro single-object prefix: marker 0xC3 0x01 then the schema's CRC-64-AVRO, little-endian.

    fastavro's hex digest already lists the fingerprint's bytes in little-endian order (as
    Apache avro's and Java's do), so it is used as it is.
    """
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    fingerprint = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    return SINGLE_OBJECT_MARKER + bytes.fromhex(fingerprint)


@dataclass(frozen=True, slots=True)
class Framing:
    """The wire format, resolved before the serializer is built: in ``confluent`` format, with its schema ids.

    Use :meth:`raw`, :meth:`single_object` or :meth:`confluent`; the ids come from registering
    each schema (``bridge.registry``) before the first record is written.
    """

    wire_format: WireFormat
    schema_ids: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def raw(cls) -> Framing:
        """Plain Avro binary."""
        return cls(WireFormat.RAW)

    @classmethod
    def single_object(cls) -> Framing:
        """Avro's single-object encoding."""
        return cls(WireFormat.SINGLE_OBJECT)

    @classmethod
    def confluent(cls, schema_ids: Mapping[str, int]) -> Framing:
        """Confluent framing with the registry's id of every schema name in use."""
        return cls(WireFormat.CONFLUENT, dict(schema_ids))

    def prefix(self, name: str) -> bytes:
        """The bytes before the Avro body of a value of schema ``name``."""
        if self.wire_format is WireFormat.SINGLE_OBJECT:
            return single_object_header(load_schema(name))
        if self.wire_format is WireFormat.CONFLUENT:
            return CONFLUENT_MAGIC + self.schema_ids[name].to_bytes(4, "big")
        return b""

    def lean_headers(self, name: str) -> tuple[tuple[str, bytes], ...]:
        """The headers a consumer needs to decode a value of schema ``name`` (see :class:`HeaderSet`)."""
        if self.wire_format is WireFormat.RAW:
            return self.headers(name)[:3]
        return (("wire-format", self.wire_format.value.encode()),)

    def headers(self, name: str) -> tuple[tuple[str, bytes], ...]:
        """The headers that say how a value of schema ``name`` is framed and which schema it is."""
        schema = load_schema(name)
        fingerprint = single_object_header(schema)[2:][::-1].hex()
        headers = [
            ("wire-format", self.wire_format.value.encode()),
            ("schema", str(schema["name"]).encode()),
            ("schema-fingerprint", fingerprint.encode()),
        ]
        if self.wire_format is WireFormat.CONFLUENT:
            headers.append(("schema-id", str(self.schema_ids[name]).encode()))
        return tuple(headers)
