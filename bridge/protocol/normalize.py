"""Push payloads to typed records, exactly.

Rules, from the protocol page ("Payloads"):

* prices, sizes and amounts are decimal strings of varying scale: parsed with :class:`Decimal`,
  never through a binary float (a JSON float is refused rather than guessed at);
* the epoch unit is decided per field, never from the digit count: trade and depth ``t`` are
  milliseconds (a JSON number), kline ``t`` is seconds (a string);
* the values are plain Unix instants: the "(UTC+8)" in the seed is wrong and nothing is shifted;
* depth ``a`` are the asks and ``b`` the bids, each as transposed columns
  ``[[price1..priceN], [size1..sizeN]]``, best level first;
* ``vw`` is the traded amount (price x size), not a VWAP.

A payload that misses a required field or carries a bad value raises :class:`MalformedPayload`
with a stable reason; nothing is coerced or filled in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bridge.errors import MalformedPayload
from bridge.protocol.codes import KlineInterval
from bridge.records import (
    EPOCH,
    DepthRecord,
    KlineRecord,
    MarketRecord,
    PriceLevel,
    Provenance,
    Side,
    Stream,
    TradeRecord,
)

# Instants outside this range are a unit or encoding error, not market data: refuse them.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SIGNS = ("+", "-")
_SIDES = {0: Side.UNKNOWN, 1: Side.BUY, 2: Side.SELL}


def normalize_trade(payload: Mapping[str, Any], provenance: Provenance) -> TradeRecord:
    """A 10002 payload as a :class:`TradeRecord`.

    Raises:
        MalformedPayload: a required field (``s``, ``t``, ``p``, ``v``) is missing or invalid.
    """
    amount = payload.get("vw")
    return TradeRecord(
        symbol=_symbol(payload),
        event_time=_epoch_millis(payload, "t"),
        price=_decimal(payload, "p"),
        size=_decimal(payload, "v", non_negative=True),
        amount=None if amount is None else _decimal(payload, "vw"),
        side=_side(payload.get("td")),
        trade_type=_optional_int(payload, "ty"),
        provenance=provenance,
    )


def normalize_depth(payload: Mapping[str, Any], provenance: Provenance) -> DepthRecord:
    """A 10005 payload as a :class:`DepthRecord` (``b`` = bids, ``a`` = asks).

    Raises:
        MalformedPayload: ``s``, ``t``, ``a`` or ``b`` missing, or columns of unequal length.
    """
    return DepthRecord(
        symbol=_symbol(payload),
        event_time=_epoch_millis(payload, "t"),
        bids=_levels(payload, "b"),
        asks=_levels(payload, "a"),
        provenance=provenance,
    )


def normalize_kline(payload: Mapping[str, Any], provenance: Provenance) -> KlineRecord:
    """A 10008 payload as a :class:`KlineRecord`.

    ``change_percent`` stays in percent as the vendor writes it (``"-0.01%"`` becomes
    ``Decimal("-0.01")``); the REST spelling ``pc`` is accepted where ``pfr`` is absent.

    Raises:
        MalformedPayload: a required field (``s t ty o h l c v vw``) is missing or invalid.
    """
    percent = payload.get("pfr", payload.get("pc"))
    change = payload.get("pca")
    return KlineRecord(
        symbol=_symbol(payload),
        interval=_interval(payload.get("ty")).label,
        open_time=_epoch_seconds(payload, "t"),
        open=_decimal(payload, "o"),
        high=_decimal(payload, "h"),
        low=_decimal(payload, "l"),
        close=_decimal(payload, "c"),
        volume=_decimal(payload, "v", non_negative=True),
        amount=_decimal(payload, "vw"),
        change=None if change is None else _decimal(payload, "pca"),
        change_percent=None if percent is None else _percent(percent),
        provenance=provenance,
    )


def parse_decimal(value: object, field: str) -> Decimal:
    """A decimal string (or a JSON integer) as an exact, finite :class:`Decimal`.

    Raises:
        MalformedPayload: for floats, booleans, NaN, infinities, or text that is not a number.
    """
    if isinstance(value, str):
        # The vendor's usual spelling (ASCII digits, at most one point, a sign) is checked without
        # the regex; anything else (exponents, or text Decimal would take but we refuse: NaN,
        # whitespace, underscores, non-ASCII digits) goes through it.
        body = value[1:] if value[:1] in _SIGNS else value
        if not (body.isascii() and body.replace(".", "", 1).isdigit()) and _DECIMAL_TEXT.fullmatch(value) is None:
            raise MalformedPayload("not_a_decimal", f"{field} is not a decimal string")
        return Decimal(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        raise MalformedPayload("binary_float", f"{field} is a JSON float; decimal strings are expected")
    raise MalformedPayload("not_a_decimal", f"{field} has type {type(value).__name__}")


def _decimal(payload: Mapping[str, Any], field: str, *, non_negative: bool = False) -> Decimal:
    if field not in payload:
        raise MalformedPayload("missing_field", field)
    value = parse_decimal(payload[field], field)
    if non_negative and value < 0:
        raise MalformedPayload("negative_size", field)
    return value


def _percent(value: object) -> Decimal:
    text = value.strip().removesuffix("%") if isinstance(value, str) else value
    return parse_decimal(text, "pfr")


def _symbol(payload: Mapping[str, Any]) -> str:
    symbol = payload.get("s")
    if not isinstance(symbol, str) or not symbol.strip():
        raise MalformedPayload("missing_field", "s")
    return symbol


def _integer(value: object, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise MalformedPayload("not_an_integer", field)


def _instant(epoch: int, unit: timedelta, field: str) -> datetime:
    try:
        instant = EPOCH + epoch * unit
    except OverflowError:
        raise MalformedPayload("time_out_of_range", field) from None
    if not _EARLIEST <= instant < _LATEST:
        raise MalformedPayload("time_out_of_range", field)
    return instant


_MILLISECOND = timedelta(milliseconds=1)
_SECOND = timedelta(seconds=1)


def _epoch_millis(payload: Mapping[str, Any], field: str) -> datetime:
    if field not in payload:
        raise MalformedPayload("missing_field", field)
    return _instant(_integer(payload[field], field), _MILLISECOND, field)


def _epoch_seconds(payload: Mapping[str, Any], field: str) -> datetime:
    if field not in payload:
        raise MalformedPayload("missing_field", field)
    return _instant(_integer(payload[field], field), _SECOND, field)


def _side(value: object) -> Side:
    if value is None:
        return Side.UNKNOWN
    side = _SIDES.get(_integer(value, "td"))
    if side is None:
        raise MalformedPayload("unknown_side", "td")
    return side


def _optional_int(payload: Mapping[str, Any], field: str) -> int | None:
    value = payload.get(field)
    return None if value is None else _integer(value, field)


def _interval(value: object) -> KlineInterval:
    if value is None:
        raise MalformedPayload("missing_field", "ty")
    try:
        return KlineInterval(_integer(value, "ty"))
    except ValueError:
        raise MalformedPayload("unknown_interval", "ty") from None


def _levels(payload: Mapping[str, Any], field: str) -> tuple[PriceLevel, ...]:
    columns = payload.get(field)
    if columns is None:
        raise MalformedPayload("missing_field", field)
    if not isinstance(columns, list) or len(columns) != 2:
        raise MalformedPayload("bad_book_side", f"{field} is not [[prices], [sizes]]")
    prices, sizes = columns
    if not isinstance(prices, list) or not isinstance(sizes, list) or len(prices) != len(sizes):
        raise MalformedPayload("bad_book_side", f"{field} prices and sizes differ in length")
    return tuple(
        PriceLevel(parse_decimal(price, field), _non_negative(parse_decimal(size, field), field))
        for price, size in zip(prices, sizes, strict=True)
    )


def _non_negative(value: Decimal, field: str) -> Decimal:
    if value < 0:
        raise MalformedPayload("negative_size", field)
    return value


NORMALIZERS: Mapping[Stream, Callable[[Mapping[str, Any], Provenance], MarketRecord]] = {
    Stream.TRADE: normalize_trade,
    Stream.DEPTH: normalize_depth,
    Stream.KLINE: normalize_kline,
}
"""The normaliser of each stream's push payload."""
