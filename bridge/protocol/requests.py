"""Frames the bridge sends, and how codes are spread over connections.

The gateway counts every client frame against 60 per minute per connection and cuts a
connection that sends one frame per symbol (protocol page, "Client to server"), so all codes of
one kind always travel merged in one comma-separated ``codes`` string, and klines of several
intervals travel in one ``arr``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.errors import LocalProtocolError
from bridge.protocol.codes import SUBSCRIBE_CODE, UNSUBSCRIBE_CODE, KlineInterval, RequestCode
from bridge.records import Stream

DEFAULT_MAX_CODES_PER_CONNECTION = 600
"""The gateway's per-connection cap, from the text of error 505 ("exceeds the limit 600")."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One stream for a set of codes on one connection; klines also name their intervals."""

    stream: Stream
    codes: tuple[str, ...]
    kline_intervals: tuple[KlineInterval, ...] = ()

    def __post_init__(self) -> None:
        if not self.codes:
            raise LocalProtocolError(f"a {self.stream} subscription needs at least one code")
        if self.stream is Stream.KLINE and not self.kline_intervals:
            raise LocalProtocolError("a kline subscription needs at least one interval")


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """What one vendor connection carries: a business, its share of codes, and their streams."""

    business: str
    index: int
    subscriptions: tuple[Subscription, ...]
    prefix: str = ""
    """Names the connection instead of the business: a shard's connections are ``crypto.s03-0``."""

    @property
    def codes(self) -> tuple[str, ...]:
        """Every distinct code on this connection, in first-seen order."""
        return tuple(dict.fromkeys(code for sub in self.subscriptions for code in sub.codes))

    @property
    def name(self) -> str:
        """A stable, human-readable id such as ``crypto-0`` (``crypto.s03-0`` in shard 3)."""
        return f"{self.prefix or self.business}-{self.index}"


def plan_connections(
    business: str,
    codes: Sequence[str],
    streams: Iterable[Stream],
    kline_intervals: Sequence[KlineInterval] = (),
    *,
    max_codes_per_connection: int = DEFAULT_MAX_CODES_PER_CONNECTION,
    first_index: int = 0,
    prefix: str = "",
) -> list[ConnectionPlan]:
    """Split one business's codes into as few connections as the per-connection cap allows.

    Codes keep their configured order and duplicates are dropped, so the same configuration
    always gives the same plan. Every connection carries every configured stream for its codes.
    ``first_index`` numbers the connections on from an earlier plan of the same business, so
    names such as ``stock-0`` stay unique when a business appears in several entries; ``prefix``
    names them in place of the business (see :attr:`ConnectionPlan.prefix`).
    """
    if max_codes_per_connection < 1:
        raise LocalProtocolError("max_codes_per_connection must be at least 1")
    unique = list(dict.fromkeys(codes))
    wanted = list(dict.fromkeys(streams))
    plans: list[ConnectionPlan] = []
    for index, start in enumerate(range(0, len(unique), max_codes_per_connection)):
        chunk = tuple(unique[start : start + max_codes_per_connection])
        subscriptions = tuple(
            Subscription(stream, chunk, tuple(kline_intervals) if stream is Stream.KLINE else ()) for stream in wanted
        )
        plans.append(ConnectionPlan(business, first_index + index, subscriptions, prefix))
    return plans


def subscribe_frame(subscription: Subscription, trace: str) -> str:
    """The subscribe request (10000 / 10003 / 10006) for one subscription."""
    joined = ",".join(subscription.codes)
    data: dict[str, Any]
    if subscription.stream is Stream.KLINE:
        intervals = subscription.kline_intervals
        data = {"arr": [{"type": int(interval), "codes": joined} for interval in intervals]}
    else:
        data = {"codes": joined}
    return _frame(SUBSCRIBE_CODE[subscription.stream], trace, data)


def unsubscribe_frame(subscription: Subscription, trace: str) -> str:
    """The unsubscribe request (11000 / 11001 / 11002).

    For klines, ``klineTypes`` names the intervals: without it the vendor drops every interval
    of those codes.
    """
    data: dict[str, Any] = {"codes": ",".join(subscription.codes)}
    if subscription.stream is Stream.KLINE:
        data["klineTypes"] = ",".join(str(int(interval)) for interval in subscription.kline_intervals)
    return _frame(UNSUBSCRIBE_CODE[subscription.stream], trace, data)


def heartbeat_frame(trace: str, *, want_ack: bool = False) -> str:
    """The 10010 heartbeat; ``want_ack`` asks the server for a 10011 answer."""
    message: dict[str, Any] = {"code": int(RequestCode.HEARTBEAT), "trace": trace}
    if want_ack:
        message["data"] = {"ack": 1}
    return orjson.dumps(message).decode()


def _frame(code: RequestCode, trace: str, data: dict[str, Any]) -> str:
    return orjson.dumps({"code": int(code), "trace": trace, "data": data}).decode()
