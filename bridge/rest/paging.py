"""Paging one code's klines backwards over REST, and choosing the bars a gap needs, with no I/O.

Theory of operation
-------------------
``POST /{biz}/v2/batch_kline`` has no cursor: a page is the ``klineNum`` bars up to ``timestamp``
(Unix seconds), newest first, and bars are sparse (a minute without trades has none). Whether the
bar *at* ``timestamp`` is included is not documented (``docs/protocol/INFOWAY-REST.md``), so each next page is
asked up to the oldest bar start already held: the pages overlap by that bar, and bars are kept
in a map keyed by their start, which de-duplicates on (symbol, interval, bar start) since a
pager serves one code and one interval.

A :class:`KlinePager` walks from the newest bars (no ``timestamp``) back until it holds a bar at
or before ``since``, a page comes back short (no older bars exist), a page brings nothing older
(a server that ignores ``timestamp``), or the plan's history window ends (513: :meth:`clamp`).
:meth:`final_bars` then gives the bars in ``[since, until)`` in bar order, leaving out the newest
bar held: it may still be open, and a bar is final only when a later bar exists.

Only one code per request: with several the server silently answers two bars each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bridge.errors import RestCause, RestError, RestTerminal
from bridge.protocol.codes import KlineInterval

MAX_PAGE_BARS: Final = 500
"""``klineNum`` above this is refused with 503 for one code."""
MAX_CODES: Final = 100
"""More distinct codes in one request is refused with 505."""


def kline_body(code: str, interval: KlineInterval, bars: int, timestamp: int | None) -> dict[str, Any]:
    """The JSON body of one ``batch_kline`` request for one code.

    Raises:
        ValueError: ``bars`` outside 1..500 or a code list instead of one code (the bridge's own bug).
    """
    if not 1 <= bars <= MAX_PAGE_BARS:
        raise ValueError(f"klineNum must be 1..{MAX_PAGE_BARS}, not {bars}")
    if not code or "," in code:
        raise ValueError(f"one code per kline request (several get 2 bars each), not {code!r}")
    body: dict[str, Any] = {"codes": code, "klineType": int(interval), "klineNum": bars}
    if timestamp is not None:
        body["timestamp"] = timestamp
    return body


def bars_of(data: Any, code: str) -> list[Mapping[str, Any]] | RestError:
    """The ``respList`` of ``code`` in a kline answer's ``data``, matched by ``s`` and never by position.

    A code missing from ``data`` has no bars (an empty list): bars are sparse. Anything not shaped
    ``[{"s", "respList": [...]}]`` is a malformed answer.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        return RestTerminal(RestCause.SERVER_ERROR, "kline data is not a list")
    for entry in data:
        if isinstance(entry, Mapping) and entry.get("s") == code:
            listed = entry.get("respList")
            if listed is None:
                return []
            if not isinstance(listed, list) or not all(isinstance(bar, Mapping) for bar in listed):
                return RestTerminal(RestCause.SERVER_ERROR, "respList is not a list of bars")
            return list(listed)
    return []


def bar_start(bar: Mapping[str, Any]) -> int | None:
    """A REST bar's start in Unix seconds (``t`` is a string of seconds), or ``None`` when unreadable."""
    value = bar.get("t")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class KlinePager:
    """The pages one code and interval needs to reach back to ``since`` (see the module docstring).

    Args:
        since: the oldest bar start wanted (Unix seconds, inclusive).
        page_bars: ``klineNum`` per request, at most 500.
    """

    def __init__(self, since: int, page_bars: int = MAX_PAGE_BARS) -> None:
        if not 1 <= page_bars <= MAX_PAGE_BARS:
            raise ValueError(f"page_bars must be 1..{MAX_PAGE_BARS}, not {page_bars}")
        self.since = since
        self.page_bars = page_bars
        self.pages = 0
        self.unreadable = 0
        """Bars skipped because their ``t`` was not a number of seconds."""
        self.earliest_allowed: int | None = None
        """Set by :meth:`clamp`: bars before this are outside the plan's history."""
        self._bars: dict[int, Mapping[str, Any]] = {}
        self._done = False

    @property
    def done(self) -> bool:
        """Whether no further page is needed."""
        return self._done

    @property
    def oldest(self) -> int | None:
        """The oldest bar start held."""
        return min(self._bars) if self._bars else None

    @property
    def newest(self) -> int | None:
        """The newest bar start held (possibly a bar still open)."""
        return max(self._bars) if self._bars else None

    def next_timestamp(self) -> int | None:
        """``timestamp`` for the next request: none for the first, then the oldest bar held (an overlap)."""
        return self.oldest

    def add(self, bars: Sequence[Mapping[str, Any]]) -> int:
        """Take one page (newest first, as sent, or in any order); returns how many bars were new."""
        self.pages += 1
        before = self.oldest
        new = 0
        for bar in bars:
            start = bar_start(bar)
            if start is None:
                self.unreadable += 1
                continue
            if start not in self._bars:
                new += 1
            self._bars[start] = bar
        oldest = self.oldest
        reached = oldest is not None and oldest <= self.since
        short = len(bars) < self.page_bars
        stuck = before is not None and (oldest is None or oldest >= before)
        if reached or short or stuck:
            self._done = True
        return new

    def clamp(self, earliest: int | None) -> None:
        """The API refused a page as older than the plan allows (513): stop paging there."""
        self.earliest_allowed = earliest
        self._done = True

    def final_bars(self, until: int | None = None) -> list[Mapping[str, Any]]:
        """The held bars with ``since <= t < until``, oldest first; the newest held bar only when it is final.

        The newest bar REST returned may still be open, unless the WebSocket already delivered a later
        one (``until`` after it): then it is final, and leaving it out would lose it (the WebSocket's
        first bar after the gap is later still).
        """
        newest = self.newest
        if newest is None:
            return []
        bound = newest if until is None else (until if until > newest else min(until, newest))
        return [self._bars[start] for start in sorted(self._bars) if self.since <= start < bound]

    def covers_since(self) -> bool:
        """Whether the pages reached back to ``since`` (or proved nothing older exists)."""
        return self.earliest_allowed is None or self.earliest_allowed <= self.since
