"""The typed records the bridge produces, one per vendor push.

Every price, size and amount is an exact :class:`~decimal.Decimal` as the vendor wrote it; every
instant is an aware UTC :class:`~datetime.datetime`. ``event_time`` is always the vendor's own
time and is never filled in with the receipt time: a consumer computes lag from the difference.

``connection_id`` and ``sequence`` are provenance: the sequence counts pushes on one vendor
connection from 1, so a consumer sees exactly where a reconnect (and a possible gap) happened.
The connection id names one connection instance of one process run
(``crypto-0#3@20261202T015346Z-3f9a1c``: plan name, attempt, run id), so ``(connection_id,
sequence)`` identifies a record across restarts and replicas.

Besides market records this module holds what else the bridge publishes: gap records (an
interval without data, and why) and dead letters (what could not become market data, and why).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MICROSECOND = timedelta(microseconds=1)


def epoch_millis(instant: datetime) -> int:
    """Whole milliseconds since the Unix epoch, truncated (Avro ``timestamp-millis``, every schema's unit)."""
    return (instant - EPOCH) // _MILLISECOND


def epoch_micros(instant: datetime) -> int:
    """Whole microseconds since the Unix epoch: how the spool keeps instants, to the unit Python has."""
    return (instant - EPOCH) // _MICROSECOND


class Stream(enum.StrEnum):
    """The three market-data streams; the value is the config and header spelling."""

    TRADE = "trade"
    DEPTH = "depth"
    KLINE = "kline"


class RecordSource(enum.StrEnum):
    """Where a kline bar or a book came from; the value is the kline and depth schemas' ``source``."""

    WS = "WS"
    """Pushed on the WebSocket (10005, 10008); a bar possibly still open, that later pushes update."""
    REST = "REST"
    """Fetched over REST: a final bar after a gap (backfill), or a book snapshot after a reconnect."""


class Side(enum.StrEnum):
    """The aggressor side of a trade, from the vendor's ``td`` (1 buy, 2 sell, 0 unknown)."""

    BUY = "BUY"
    SELL = "SELL"
    UNKNOWN = "UNKNOWN"


# The market records and their provenance are built once per push: they are plain slotted
# dataclasses, not frozen ones, whose __init__ costs a call of object.__setattr__ per field (about
# 2.6 against 0.35 µs for eight fields here, issue 14). Nothing changes them after construction.


@dataclass(slots=True)
class Provenance:
    """Where a record came from: the business, the connection and the push's place on it."""

    business: str
    connection_id: str
    sequence: int
    received_time: datetime


@dataclass(slots=True)
class TradeRecord:
    """One executed trade (push 10002)."""

    symbol: str
    event_time: datetime
    price: Decimal
    size: Decimal
    amount: Decimal | None
    side: Side
    trade_type: int | None
    provenance: Provenance

    stream = Stream.TRADE


@dataclass(slots=True)
class PriceLevel:
    """One level of an order book side."""

    price: Decimal
    size: Decimal


@dataclass(slots=True)
class DepthRecord:
    """A snapshot of up to five levels per side (push 10005); best level first on both sides."""

    symbol: str
    event_time: datetime
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
    provenance: Provenance
    source: RecordSource = RecordSource.WS

    stream = Stream.DEPTH


@dataclass(slots=True)
class KlineRecord:
    """One bar of one interval (push 10008); the vendor re-sends a bar as it updates."""

    symbol: str
    interval: str
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    amount: Decimal
    change: Decimal | None
    change_percent: Decimal | None
    provenance: Provenance
    source: RecordSource = RecordSource.WS

    stream = Stream.KLINE

    @property
    def event_time(self) -> datetime:
        """The bar's start: the only vendor time a kline push carries (protocol page, Kline)."""
        return self.open_time


MarketRecord = TradeRecord | DepthRecord | KlineRecord


class Cause(enum.StrEnum):
    """Why a vendor connection ended (or its data stopped); the value is the metric label and the gap's cause."""

    CLOSED = "closed"
    """The peer closed the socket (with or without a close frame)."""
    SOCKET_ERROR = "socket_error"
    """The network failed: refused, reset, unreachable."""
    TIMEOUT = "timeout"
    """The handshake or a read did not complete in time."""
    HANDSHAKE = "handshake"
    """The WebSocket handshake was malformed."""
    HTTP_REFUSED = "http_refused"
    """The gateway refused the handshake with an HTTP status (``code``)."""
    VENDOR_ERROR = "vendor_error"
    """The vendor sent an error frame that ends the connection (``code``)."""
    STALE = "stale"
    """No push for ``stale_after`` seconds on an open socket."""
    SPOOL_FULL = "spool_full"
    """The spool reached ``spool.max_bytes`` (``when_full: stop-reading``): reading stopped until there was room."""
    SHARD_MOVED = "shard_moved"
    """The codes' shard moved from another replica (or from this one's previous run): nobody read them in between."""
    STOPPED = "stopped"
    """The bridge was asked to stop."""
    ERROR = "error"
    """Anything else: a bug, logged with its traceback."""


class DeadLetterStage(enum.StrEnum):
    """Where something failed to become market data; the value is written in the dead letter."""

    CLASSIFY = "classify"
    """The frame itself: not JSON, binary, an unknown code."""
    NORMALIZE = "normalize"
    """The push's payload: a missing field, a bad number."""
    SERIALIZE = "serialize"
    """The Avro encoding: a decimal the schema cannot carry exactly."""
    PRODUCE = "produce"
    """The broker refused the record for good."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something that could not become market data, and why (``schemas/dead_letter.avsc``).

    ``reason`` is a short, stable label (never text from the frame); ``raw`` is the frame's text,
    scrubbed of secrets by the serializer before it leaves the process.
    """

    reason: str
    stage: DeadLetterStage
    detail: str
    raw: str
    received_time: datetime
    business: str | None = None
    connection_id: str | None = None
    target_topic: str | None = None


class BackfillStatus(enum.StrEnum):
    """How much of a gap the REST backfill filled; the value is in the gap record and a metric label."""

    FULL = "full"
    """Every kline code and interval of the gap was fetched back to the gap's start."""
    PARTIAL = "partial"
    """Some were, some were not (each item says why)."""
    NONE = "none"
    """Nothing could be fetched, or the gap carried no klines."""


@dataclass(frozen=True, slots=True)
class BackfillItem:
    """What the backfill did for one code and interval of a gap.

    ``reason`` is ``None`` when the item is complete, else a stable phrase: a
    :class:`~bridge.errors.RestCause` value, ``max_age`` (the gap is older than ``backfill.max_age``),
    ``stopped`` (the bridge stopped first) or ``no_history`` (trades and depth have no REST history).
    """

    symbol: str
    stream: Stream
    interval: str | None
    bars: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """What a gap's backfill published over REST and what it could not (``schemas/gap.avsc``, ``backfill``)."""

    status: BackfillStatus
    bars: int
    items: tuple[BackfillItem, ...]
    first_bar: datetime | None
    last_bar: datetime | None


@dataclass(frozen=True, slots=True)
class GapRecord:
    """An interval during which a connection's subscriptions were not being received.

    The vendor does not replay what it pushed while the bridge was away, so the bridge reports
    the hole instead of hiding it (ARCHITECTURE.md, "Guarantees").
    """

    business: str
    connection: str
    codes: tuple[str, ...]
    streams: tuple[Stream, ...]
    start: datetime
    end: datetime
    cause: Cause
    code: int | None
    """The vendor error code or HTTP status behind ``cause``, when it has one."""
    resolved: bool
    previous_connection_id: str
    next_connection_id: str | None
    backfill: BackfillReport | None = None
    """Set on the follow-up record published once the gap's backfill finished (or gave up)."""

    @property
    def seconds(self) -> float:
        """The gap's length."""
        return max((self.end - self.start).total_seconds(), 0.0)
