"""The ``data`` of the vendor's three pushes, as the simulator writes them, and the push frame around it."""

from __future__ import annotations

from typing import Any, TypedDict

import orjson

from bridge.protocol.codes import ResponseCode


class TradePayload(TypedDict):
    """``data`` of a 10002 push, keys in the production capture's order."""

    p: str
    s: str
    t: int
    td: int
    v: str
    vw: str


class DepthPayload(TypedDict):
    """``data`` of a 10005 push: ``a`` asks and ``b`` bids as ``[[prices], [sizes]]`` columns."""

    a: list[list[str]]
    b: list[list[str]]
    s: str
    t: int


class KlinePayload(TypedDict):
    """``data`` of a 10008 push: one bar; ``t`` is the bar start in epoch seconds, as a string."""

    c: str
    h: str
    l: str  # noqa: E741 - the vendor's field name
    o: str
    pca: str
    pfr: str
    s: str
    t: str
    ty: int
    v: str
    vw: str


def encode_push(code: ResponseCode, payload: TradePayload | DepthPayload | KlinePayload) -> str:
    """The text frame of a push, compact like the production captures."""
    frame: dict[str, Any] = {"code": int(code), "data": payload}
    return orjson.dumps(frame).decode()
