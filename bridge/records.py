"""The typed records the bridge produces, one per vendor push.

Every price, size and amount is an exact :class:`~decimal.Decimal` as the vendor wrote it; every
instant is an aware UTC :class:`~datetime.datetime`. ``event_time`` is always the vendor's own
time and is never filled in with the receipt time: a consumer computes lag from the difference.

``connection_id`` and ``sequence`` are provenance: the sequence counts pushes on one vendor
connection from 1, so a consumer sees exactly where a reconnect (and a possible gap) happened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


class Stream(enum.StrEnum):
    """The three market-data streams; the value is the config and header spelling."""

    TRADE = "trade"
    DEPTH = "depth"
    KLINE = "kline"


class Side(enum.StrEnum):
    """The aggressor side of a trade, from the vendor's ``td`` (1 buy, 2 sell, 0 unknown)."""

    BUY = "BUY"
    SELL = "SELL"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a record came from: the business, the connection and the push's place on it."""

    business: str
    connection_id: str
    sequence: int
    received_time: datetime


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class PriceLevel:
    """One level of an order book side."""

    price: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class DepthRecord:
    """A snapshot of up to five levels per side (push 10005); best level first on both sides."""

    symbol: str
    event_time: datetime
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
    provenance: Provenance

    stream = Stream.DEPTH


@dataclass(frozen=True, slots=True)
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

    stream = Stream.KLINE

    @property
    def event_time(self) -> datetime:
        """The bar's start: the only vendor time a kline push carries (protocol page, Kline)."""
        return self.open_time


MarketRecord = TradeRecord | DepthRecord | KlineRecord


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
    cause: str
    resolved: bool
    previous_connection_id: str
    next_connection_id: str | None

    @property
    def seconds(self) -> float:
        """The gap's length."""
        return max((self.end - self.start).total_seconds(), 0.0)
