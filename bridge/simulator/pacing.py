"""The simulator's pacer task: rates into pushes owed, heartbeat deadlines, and markets that trade through gaps.

Every tick (``tick_seconds``, 10 ms) the loop passes the time elapsed to one
:class:`~bridge.simulator.pacer.StreamPacer` per stream, which hands the whole pushes due
round-robin to the subscribed (connection, code) pairs; asks the gateway whether a connection's
heartbeat is overdue; and, every ``_TRADE_EVERY_TICKS`` ticks, trades every kline pair nobody is
subscribed to now, so the bars of a client's gap exist (see :mod:`bridge.simulator.server`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from bridge.protocol.codes import KlineInterval
from bridge.records import Stream
from bridge.simulator.bars import bar_seconds
from bridge.simulator.connection import ServedConnection, ServerState
from bridge.simulator.options import SimulatorOptions
from bridge.simulator.pacer import Due, StreamPacer

logger = logging.getLogger("bridge.simulator")

_TRADE_EVERY_TICKS = 10
"""Pairs nobody is subscribed to trade every this many pacer ticks."""
_MAX_BARS_PER_CALL = 2000


class PacingLoop:
    """The pacer's state and its tick (see the module docstring); the server runs :meth:`run` as one task."""

    def __init__(
        self, options: SimulatorOptions, state: ServerState, connections: Mapping[int, ServedConnection]
    ) -> None:
        self._options = options
        self._state = state
        self._connections = connections
        # Each stream's subscribed pairs, rebuilt when the state's version has moved since.
        self._pairs: dict[Stream, tuple[int, list[tuple[ServedConnection, Due]]]] = {}
        self._traded: set[tuple[str, str, KlineInterval]] = set()
        """Every (business, code, interval) ever subscribed for klines: they keep trading during gaps."""
        self._subscribed_klines: set[tuple[str, str, KlineInterval]] = set()
        self._ticks = 0
        self._traded_until = 0

    async def run(self) -> None:
        """Turn rates into pushes owed, every tick, until cancelled; safe to cancel."""
        loop = asyncio.get_running_loop()
        state = self._state
        last = loop.time()
        while True:
            await asyncio.sleep(self._options.tick_seconds)
            now = loop.time()
            elapsed, last = now - last, now
            for pacer in state.pacers.values():
                self._allocate(pacer, elapsed)
            if self._options.rules.heartbeat_timeout is not None:
                self._check_heartbeats(time.monotonic())
            self._ticks += 1
            if self._ticks % _TRADE_EVERY_TICKS == 0:
                self._trade_unsubscribed()
            if state.recorder is not None:
                state.recorder.flush()

    def _check_heartbeats(self, now: float) -> None:
        for connection in self._connections.values():
            frame = self._state.gateway.overdue(connection.line, now)
            if frame is not None:
                self._state.stats.heartbeat_timeouts += 1
                self._state.version += 1
                logger.info("connection %d: heartbeat timeout, answered 513 and closing", connection.info.id)
                connection.cut(frame)

    def _allocate(self, pacer: StreamPacer, elapsed: float) -> None:
        if pacer.rate <= 0:
            return
        current = self._state.version
        version, pairs = self._pairs.get(pacer.stream, (-1, []))
        if version != current:
            pairs = self._subscribed_pairs(pacer.stream)
            self._pairs[pacer.stream] = (current, pairs)
        allocation = pacer.allocate(elapsed, pairs)
        self._state.stats.pushes_skipped += allocation.skipped
        for connection in allocation.woken:
            connection.wake.set()

    def _trade_unsubscribed(self) -> None:
        """Fills for every kline pair nobody is subscribed to now, so its market goes on during a gap.

        One fill per bar interval of market time since the last call (at most ``_MAX_BARS_PER_CALL``),
        so every bar that is not quiet exists however fast the market clock runs.
        """
        state = self._state
        now = state.now_ms()
        since, self._traded_until = self._traded_until, now
        for business, code, interval in self._traded - self._subscribed_klines:
            market = state.market(business)
            step = bar_seconds(interval) * 1000
            first = max(since, now - _MAX_BARS_PER_CALL * step)
            for instant in [*range(first - first % step + step, now, step), now]:
                if not market.quiet(code, interval, instant):
                    market.instrument(code).kline(interval, instant)

    def _subscribed_pairs(self, stream: Stream) -> list[tuple[ServedConnection, Due]]:
        pairs: list[tuple[ServedConnection, Due]] = []
        for connection in self._connections.values():
            info = connection.info
            if not info.serves_data or connection.line.cut:
                continue
            if stream is Stream.TRADE:
                pairs.extend((connection, Due(stream, code)) for code in info.trades)
            elif stream is Stream.DEPTH:
                pairs.extend((connection, Due(stream, code)) for code in info.depth)
            else:
                pairs.extend((connection, Due(stream, code, interval)) for code, interval in info.klines)
        if stream is Stream.KLINE:
            self._subscribed_klines = {
                (connection.info.business, due.code, due.interval) for connection, due in pairs if due.interval
            }
            self._traded |= self._subscribed_klines
        return pairs
