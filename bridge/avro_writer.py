"""Avro binary encoders compiled from a record schema: one straight-line function per schema.

fastavro's ``schemaless_writer`` walks the schema for every datum: for a 74-byte trade that walk
costs more than the bytes (issue 14: 12 % of the bridge's CPU at 5,000 trades/s). Here the walk
happens once: :func:`compile_writer` turns the schema's JSON into the source of a Python function
that reads each field of a datum (a mapping, as fastavro takes) in schema order and appends its
encoding, then compiles it. Nothing is written per field by hand, so a field added to
``schemas/*.avsc`` (say an enum with a default) is encoded as soon as the schema has it; a field
the datum lacks takes the schema's default, as fastavro does.

The encoding is Avro's binary encoding of the *physical* types (the specification, "Binary
Encoding"): logical types are converted before, exactly, by the caller (``bridge.serialize``), so
a decimal arrives as its unscaled two's-complement bytes and a timestamp as its epoch count.
Supported: null, boolean, int, long, float, double, bytes, string, fixed, enum, array, map, record
and unions (a branch chosen by the value's Python type, first match). Tests check every schema
byte for byte against fastavro and decode the output with Apache ``avro``.

The generated source is built from our own schema files only (never from input), so ``exec`` of it
runs nothing we did not write.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

Datum = Mapping[str, Any]
Writer = Callable[[Datum], bytes]

_SMALL = tuple(bytes((value,)) for value in range(128))
_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack


_TAILS: dict[int, bytes] = {}
_TAILS_MAX = 4096


def _varint(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def encode_long(value: int) -> bytes:
    """Avro ``long``/``int``: zig-zag, then a little-endian base-128 varint.

    Above two bytes, the varint is the low 14 bits' two bytes and then the varint of the rest: that
    tail is the same for every timestamp within 8 s and every sequence number within 16,384, so it
    is kept in a small table (cleared when it reaches 4,096 entries), sparing the loop.
    """
    number = (value << 1) ^ (value >> 63)
    if number < 0x80:
        return _SMALL[number]
    if number < 0x4000:
        return bytes(((number & 0x7F) | 0x80, number >> 7))
    high = number >> 14
    tail = _TAILS.get(high)
    if tail is None:
        if len(_TAILS) >= _TAILS_MAX:
            _TAILS.clear()
        tail = _TAILS[high] = _varint(high)
    return bytes(((number & 0x7F) | 0x80, ((number >> 7) & 0x7F) | 0x80)) + tail


def encode_bytes(value: bytes) -> bytes:
    """Avro ``bytes``: the length as a long, then the bytes."""
    length = len(value)
    return (_SMALL[length << 1] if length < 64 else encode_long(length)) + value


def encode_string(value: str) -> bytes:
    """Avro ``string``: its UTF-8 as ``bytes``."""
    return encode_bytes(value.encode())


_HELPERS: dict[str, Any] = {
    "_long": encode_long,
    "_bytes": encode_bytes,
    "_str": encode_string,
    "_double": _DOUBLE,
    "_float": _FLOAT,
}
_PRIMITIVE = {
    "null": "pass",
    "boolean": "_a(b'\\x01' if {v} else b'\\x00')",
    "int": "_a(_long({v}))",
    "long": "_a(_long({v}))",
    "float": "_a(_float({v}))",
    "double": "_a(_double({v}))",
    "bytes": "_a(_bytes({v}))",
    "string": "_a(_str({v}))",
}
# The Python types a union branch accepts, in the order fastavro tries them.
_BRANCH_TEST = {
    "null": "{v} is None",
    "boolean": "isinstance({v}, bool)",
    "int": "isinstance({v}, int) and not isinstance({v}, bool)",
    "long": "isinstance({v}, int) and not isinstance({v}, bool)",
    "float": "isinstance({v}, (int, float)) and not isinstance({v}, bool)",
    "double": "isinstance({v}, (int, float)) and not isinstance({v}, bool)",
    "bytes": "isinstance({v}, (bytes, bytearray))",
    "string": "isinstance({v}, str)",
    "fixed": "isinstance({v}, (bytes, bytearray))",
    "enum": "isinstance({v}, str)",
    "array": "isinstance({v}, (list, tuple))",
    "map": "isinstance({v}, Mapping)",
    "record": "isinstance({v}, Mapping)",
}


class _Compiler:
    """Emits the lines of one writer function; named types are remembered as they are defined."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.lines: list[str] = []
        self.named: dict[str, dict[str, Any]] = {}
        self._counter = 0

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"_{stem}{self._counter}"

    def constant(self, value: Any) -> str:
        name = self.fresh("c")
        self.namespace[name] = value
        return name

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    def resolve(self, schema: Any, namespace: str | None) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVE:
            full = schema if "." in schema or namespace is None else f"{namespace}.{schema}"
            return self.named.get(full) or self.named[schema]
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVE:
            return schema["type"]  # a primitive with attributes (a logical type): its physical type
        return schema

    def define(self, schema: dict[str, Any], namespace: str | None) -> str | None:
        if "name" not in schema:
            return namespace
        name = str(schema["name"])
        space = schema.get("namespace", namespace)
        full = name if "." in name or space is None else f"{space}.{name}"
        self.named[full] = self.named[name] = schema
        return full.rpartition(".")[0] or None

    def value(self, schema: Any, expression: str, depth: int, namespace: str | None) -> None:
        """Lines that append the encoding of ``expression`` (already bound to a local) of ``schema``."""
        schema = self.resolve(schema, namespace)
        if isinstance(schema, str):
            self.emit(_PRIMITIVE[schema].format(v=expression), depth)
        elif isinstance(schema, list):
            self.union(schema, expression, depth, namespace)
        else:
            kind = schema["type"]
            if kind == "record":
                self.record(schema, expression, depth, namespace)
            elif kind == "enum":
                self.define(schema, namespace)
                index = self.constant({symbol: encode_long(i) for i, symbol in enumerate(schema["symbols"])})
                self.emit(f"_a({index}[{expression}])", depth)
            elif kind == "fixed":
                self.define(schema, namespace)
                self.emit(f"_a({expression})", depth)
            elif kind in ("array", "map"):
                self.collection(schema, expression, depth, namespace)
            else:
                raise ValueError(f"unsupported Avro type {kind!r}")

    def union(self, branches: list[Any], expression: str, depth: int, namespace: str | None) -> None:
        keyword = "if"
        for index, branch in enumerate(branches):
            resolved = self.resolve(branch, namespace)
            if isinstance(resolved, list):
                raise TypeError("a union may not contain a union")
            kind = resolved if isinstance(resolved, str) else resolved["type"]
            self.emit(f"{keyword} {_BRANCH_TEST[kind].format(v=expression)}:", depth)
            self.emit(f"_a({encode_long(index)!r})", depth + 1)
            self.value(branch, expression, depth + 1, namespace)
            keyword = "elif"
        self.emit("else:", depth)
        self.emit(f"raise ValueError(f'{{{expression}!r}} matches no branch of the union')", depth + 1)

    def collection(self, schema: dict[str, Any], expression: str, depth: int, namespace: str | None) -> None:
        item = self.fresh("i")
        self.emit(f"if {expression}:", depth)
        self.emit(f"_a(_long(len({expression})))", depth + 1)
        if schema["type"] == "array":
            self.emit(f"for {item} in {expression}:", depth + 1)
            self.value(schema["items"], item, depth + 2, namespace)
        else:
            key = self.fresh("k")
            self.emit(f"for {key}, {item} in {expression}.items():", depth + 1)
            self.emit(f"_a(_str({key}))", depth + 2)
            self.value(schema["values"], item, depth + 2, namespace)
        self.emit("_a(b'\\x00')", depth)

    def record(self, schema: dict[str, Any], expression: str, depth: int, namespace: str | None) -> None:
        space = self.define(schema, namespace)
        for field in schema["fields"]:
            local = self.fresh("v")
            key = repr(field["name"])
            if "default" in field:
                self.emit(f"{local} = {expression}.get({key}, {self.constant(field['default'])})", depth)
            else:
                self.emit(f"{local} = {expression}[{key}]", depth)
            self.value(field["type"], local, depth, space)


def compile_writer(schema: dict[str, Any]) -> Writer:
    """A function encoding a datum of the record ``schema`` (its JSON, as in ``schemas/*.avsc``) to Avro binary.

    Raises:
        ValueError: the schema is not a record, or uses a type not supported here.
        TypeError: a union contains a union.
        KeyError: a field without a default is missing from a datum (when the function runs).
    """
    if schema.get("type") != "record":
        raise ValueError("compile_writer takes a record schema")
    namespace: dict[str, Any] = {"Mapping": Mapping, **_HELPERS}
    compiler = _Compiler(namespace)
    compiler.record(schema, "datum", 1, None)
    source = "\n".join(["def write(datum):", "    _parts = []", "    _a = _parts.append", *compiler.lines])
    source += "\n    return b''.join(_parts)\n"
    exec(compile(source, f"<avro writer {schema.get('name')}>", "exec"), namespace)  # noqa: S102 (see the docstring)
    writer: Writer = namespace["write"]
    return writer
