"""``infoway-bridge tail``: a topic's records decoded, one JSON line each, for a person to read.

kcat shows the Avro values as binary; this decodes them in every wire format the bridge writes.
Which schema a value was written with comes from the value itself where the format says so (the
registry id of ``confluent``, the fingerprint of ``single-object``) and from the ``schema`` header
the bridge sets for ``raw``, unless ``--schema`` names one. Decimals print as strings, exactly;
instants as ISO-8601 UTC. A value that cannot be decoded is reported on stderr as one line naming
its partition and offset, and the tail goes on.

The decoding (:class:`ValueDecoder`, :func:`record_line`) does no Kafka I/O; :func:`tail` is the
consumer loop around it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import fastavro
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError as AIOKafkaError

from bridge import arguments
from bridge.config import BOOTSTRAP_ENV
from bridge.serialize import (
    CONFLUENT_MAGIC,
    SCHEMA_NAMES,
    SINGLE_OBJECT_MARKER,
    WireFormat,
    load_schema,
    single_object_header,
)

FORMATS = ("auto", *(wire_format.value for wire_format in WireFormat))
EXIT_USAGE = 2
EXIT_KAFKA = 3
_POLL_MS = 500
_REGISTRY_TIMEOUT_S = 10.0
_ASSIGNMENT_TIMEOUT_S = 30.0

TAIL_EPILOG = """\
output:
  one JSON object per record on stdout: {"partition", "offset", "timestamp", "key"?, "headers"?, "value"};
  decimals as strings ("63039.5"), instants as ISO-8601 UTC ("2026-08-15T06:27:00.123Z").
  A value that cannot be decoded prints "tail: partition P offset O: why" on stderr; the tail goes on.

where it starts and stops:
  without --from-beginning: at the end of every partition, waiting for new records (like tail -f)
  --from-beginning:         from the first record kept, stopping at the end (add --follow to wait on)
  --count N:                stops after N records printed, in either case

exit status: 0 done (or Ctrl-C), 2 bad arguments or unknown topic, 3 Kafka unreachable

examples:
  infoway-bridge tail infoway.trades --from-beginning --count 5
  infoway-bridge tail infoway.depth --symbol BTCUSDT --key --headers
  infoway-bridge tail infoway.kline --format confluent --registry-url http://registry:8081 --from-beginning
"""


class Undecodable(Exception):
    """A value this tail cannot decode; the message says why in one line."""


def json_ready(value: Any) -> Any:
    """A decoded Avro datum with exact, readable JSON values: Decimal as a plain string, datetime as ISO UTC."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(name): json_ready(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def _full_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    return name if "." in name else f"{schema.get('namespace', '')}.{name}"


class ValueDecoder:
    """Decodes values of one topic in a wire format, finding each value's writer schema.

    Args:
        wire_format: ``raw``, ``single-object``, ``confluent``, or ``auto`` (by each record's
            ``wire-format`` header, raw when it has none).
        schema: the writer schema of raw values; ``None`` looks it up by the ``schema`` header
            among the schemas this bridge ships.
        fetch_schema: the schema text registered under an id (confluent); fetched once per id.
    """

    def __init__(
        self,
        wire_format: str,
        schema: dict[str, Any] | None = None,
        fetch_schema: Callable[[int], str] | None = None,
    ) -> None:
        self._wire_format = wire_format
        self._schema = fastavro.parse_schema(schema) if schema is not None else None
        self._fetch_schema = fetch_schema
        shipped = [load_schema(name) for name in SCHEMA_NAMES]
        self._by_name = {_full_name(parsed): parsed for parsed in shipped}
        self._by_fingerprint = {single_object_header(parsed)[2:]: parsed for parsed in shipped}
        self._by_id: dict[int, Any] = {}

    def decode(self, value: bytes | None, headers: Mapping[str, bytes]) -> Any:
        """The datum in ``value``.

        Raises:
            Undecodable: the framing is not the expected one, the schema is unknown, or the body
                does not decode with it.
        """
        if value is None:
            raise Undecodable("the value is empty (a tombstone)")
        wire_format = self._wire_format
        if wire_format == "auto":
            wire_format = headers.get("wire-format", b"raw").decode("utf-8", "replace")
        if wire_format == WireFormat.CONFLUENT:
            schema, body = self._confluent(value)
        elif wire_format == WireFormat.SINGLE_OBJECT:
            schema, body = self._single_object(value)
        elif wire_format == WireFormat.RAW:
            schema, body = self._raw(headers), value
        else:
            raise Undecodable(f"unknown wire-format header {wire_format!r}; pass --format")
        stream = io.BytesIO(body)
        try:
            datum = fastavro.schemaless_reader(stream, schema, None)
        except Exception as exc:  # fastavro raises whatever the bytes provoke: all mean "not this schema"
            raise Undecodable(f"does not decode as {_full_name(schema)}: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(body):
            raise Undecodable(f"{len(body) - stream.tell()} bytes left over after a {_full_name(schema)}")
        return datum

    def _raw(self, headers: Mapping[str, bytes]) -> Any:
        if self._schema is not None:
            return self._schema
        name = headers.get("schema")
        if name is None:
            raise Undecodable("raw value without a schema header; pass --schema")
        schema = self._by_name.get(name.decode("utf-8", "replace"))
        if schema is None:
            raise Undecodable(f"written with schema {name.decode('utf-8', 'replace')}, not shipped here; pass --schema")
        return schema

    def _single_object(self, value: bytes) -> tuple[Any, bytes]:
        if value[:2] != SINGLE_OBJECT_MARKER or len(value) < 10:
            raise Undecodable(f"not a single-object value (starts with {value[:2].hex() or 'nothing'}, not c301)")
        schema = self._by_fingerprint.get(value[2:10]) if self._schema is None else self._schema
        if schema is None:
            raise Undecodable(f"unknown schema fingerprint {value[2:10][::-1].hex()}; pass --schema")
        return schema, value[10:]

    def _confluent(self, value: bytes) -> tuple[Any, bytes]:
        if value[:1] != CONFLUENT_MAGIC or len(value) < 5:
            raise Undecodable(f"not a confluent value (magic byte {value[:1].hex() or 'missing'}, not 00)")
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in self._by_id:
            if self._fetch_schema is None:
                raise Undecodable("confluent value, but no --registry-url to fetch its schema from")
            self._by_id[schema_id] = fastavro.parse_schema(json.loads(self._fetch_schema(schema_id)))
        return self._by_id[schema_id], value[5:]


def registry_fetcher(url: str) -> Callable[[int], str]:
    """Fetches ``GET <url>/schemas/ids/<id>`` (the Confluent API; Apicurio serves it under /apis/ccompat/v7)."""

    def fetch(schema_id: int) -> str:
        address = f"{url.rstrip('/')}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(address, timeout=_REGISTRY_TIMEOUT_S) as response:  # noqa: S310 (http(s) checked)
                text: str = json.loads(response.read())["schema"]
        except urllib.error.HTTPError as exc:
            raise Undecodable(f"the registry answered HTTP {exc.code} for schema id {schema_id}") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise Undecodable(f"cannot fetch schema id {schema_id} from {url}: {exc}") from exc
        return text

    return fetch


@dataclass(frozen=True, slots=True)
class LineOptions:
    """What a record's line carries besides its place and value."""

    key: bool = False
    headers: bool = False


def record_line(
    partition: int, offset: int, timestamp_ms: int, key: bytes | None, headers: Iterable[tuple[str, bytes]], datum: Any,
    options: LineOptions,
) -> str:  # fmt: skip
    """One record as its JSON line."""
    line: dict[str, Any] = {
        "partition": partition,
        "offset": offset,
        "timestamp": json_ready(datetime.fromtimestamp(timestamp_ms / 1000, UTC)),
    }
    if options.key:
        line["key"] = None if key is None else key.decode("utf-8", "replace")
    if options.headers:
        line["headers"] = {name: value.decode("utf-8", "replace") for name, value in headers}
    line["value"] = json_ready(datum)
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class TailRequest:
    """One run of ``tail``: the topic, where to start and stop, and what to print."""

    topic: str
    bootstrap_servers: str
    from_beginning: bool = False
    follow: bool = False
    count: int | None = None
    symbols: frozenset[str] = frozenset()
    line: LineOptions = LineOptions()


async def tail(request: TailRequest, decoder: ValueDecoder, out: TextIO, err: TextIO) -> int:
    """Print the topic's records as JSON lines until the request says stop; returns the exit status."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=request.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="infoway-tail",
        auto_offset_reset="earliest" if request.from_beginning else "latest",
    )
    try:
        await consumer.start()
    except AIOKafkaError as exc:
        await consumer.stop()
        print(f"tail: cannot reach Kafka at {request.bootstrap_servers}: {exc}", file=err)
        return EXIT_KAFKA
    try:
        # Checked before subscribing: a subscription to a missing topic could have the broker create it.
        if request.topic not in await consumer.topics():
            print(f"tail: topic {request.topic!r} does not exist on {request.bootstrap_servers}", file=err)
            return EXIT_USAGE
        consumer.subscribe([request.topic])
        # Without a group every partition is assigned once metadata arrives; aiokafka signals that with no event.
        async with asyncio.timeout(_ASSIGNMENT_TIMEOUT_S):
            while not consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        partitions = sorted(consumer.assignment())
        starting = consumer.seek_to_beginning if request.from_beginning else consumer.seek_to_end
        await starting(*partitions)
        ends = await consumer.end_offsets(partitions) if request.from_beginning and not request.follow else None
        printed = 0
        while request.count is None or printed < request.count:
            if ends is not None and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                break
            batch = await consumer.getmany(*partitions, timeout_ms=_POLL_MS)
            for records in batch.values():
                for record in records:
                    if request.count is not None and printed >= request.count:
                        break
                    if request.symbols and (record.key or b"").decode("utf-8", "replace") not in request.symbols:
                        continue
                    headers = dict(record.headers)
                    try:
                        datum = decoder.decode(record.value, headers)
                    except Undecodable as exc:
                        print(f"tail: partition {record.partition} offset {record.offset}: {exc}", file=err, flush=True)
                        continue
                    options = request.line
                    line = record_line(
                        record.partition, record.offset, record.timestamp, record.key, record.headers, datum, options
                    )
                    print(line, file=out, flush=True)
                    printed += 1
    finally:
        await consumer.stop()
    return 0


def add_tail_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``infoway-bridge tail``."""
    parser.add_argument("topic", help="the topic to read, e.g. infoway.trades")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get(BOOTSTRAP_ENV, "127.0.0.1:9092"),
        help=f"Kafka brokers, host:port[,host:port] (default: ${BOOTSTRAP_ENV}, else 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="the wire format of the values; auto reads each record's wire-format header (default: auto)",
    )
    parser.add_argument(
        "--schema",
        metavar="NAME_OR_FILE",
        help="writer schema of raw or single-object values: trade, depth, kline, dead_letter, gap or an .avsc file "
        "(default: by the record's schema header or fingerprint)",
    )
    parser.add_argument("--registry-url", help="schema registry API root, for confluent values (fetched by id)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the first record kept, not the end")
    parser.add_argument("--follow", action="store_true", help="with --from-beginning: keep waiting at the end")
    parser.add_argument("--count", type=arguments.positive, metavar="N", help="stop after printing N records")
    parser.add_argument(
        "--symbol",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="only records whose key is SYMBOL (the symbol on market topics); repeatable",
    )
    parser.add_argument("--key", action="store_true", help="print each record's key")
    parser.add_argument("--headers", action="store_true", help="print each record's headers")


def _schema_argument(value: str) -> dict[str, Any]:
    if value in SCHEMA_NAMES:
        return load_schema(value)
    try:
        loaded: dict[str, Any] = json.loads(Path(value).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Undecodable(
            f"--schema {value}: not one of {', '.join(SCHEMA_NAMES)} nor a readable .avsc: {exc}"
        ) from exc
    return loaded


def run_tail(args: argparse.Namespace) -> int:
    """``infoway-bridge tail``: decode the arguments, then tail until done or Ctrl-C."""
    try:
        schema = _schema_argument(args.schema) if args.schema else None
    except Undecodable as exc:
        print(f"tail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == WireFormat.CONFLUENT and not args.registry_url:
        print("tail: --format confluent needs --registry-url (schemas are fetched by id)", file=sys.stderr)
        return EXIT_USAGE
    fetch = registry_fetcher(args.registry_url) if args.registry_url else None
    # The tail says itself what went wrong, in one line; aiokafka's own log lines would only repeat it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    request = TailRequest(
        topic=args.topic,
        bootstrap_servers=args.bootstrap_servers,
        from_beginning=args.from_beginning,
        follow=args.follow or not args.from_beginning,
        count=args.count,
        symbols=frozenset(args.symbol),
        line=LineOptions(key=args.key, headers=args.headers),
    )
    try:
        return asyncio.run(tail(request, ValueDecoder(args.format, schema, fetch), sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (| head): stop quietly; stdout now leads nowhere, so the final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
