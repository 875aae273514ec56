"""What the simulator can be told (:class:`SimulatorOptions`) and what it counts (:class:`SimulatorStats`).

One frozen tree, validated at construction, for the server, the CLI and the tests alike: the
gateway's limits and fault modes are its nested ``rules`` (:class:`~bridge.simulator.gateway.GatewayRules`,
which validates itself), so no option is restated anywhere. The CLI takes its defaults from
here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bridge.records import Stream
from bridge.simulator.gateway import GatewayRules
from bridge.simulator.pacer import MAX_CREDIT_SECONDS

DEFAULT_API_KEY: Final = "demo-key"
MIN_BACKLOG: Final = 4096


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything the simulator can be told; validated at construction.

    Rates are pushes per second in total over all subscribed pairs. ``None`` for ``depth_rate``
    means "same as ``rate``" and for ``kline_rate`` ``max(1, rate / 10)``; the ``max_*`` limits
    are totals over all connections, ``None`` meaning unlimited. ``seed`` ``None`` draws a seed
    at start (logged, so a run can be replayed).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    """The only key the handshake accepts; left out of the repr so it never lands in a log."""
    rate: float = 1000.0
    depth_rate: float | None = None
    kline_rate: float | None = None
    max_pushes: int | None = None
    max_depth_pushes: int | None = None
    max_kline_pushes: int | None = None
    record_sent: Path | None = None
    seed: int | None = None
    tick_seconds: float = 0.01
    backlog: int | None = None
    """Pushes owed to one connection before further ones are skipped (a slow client);
    ``None`` sizes it so a client that keeps up never loses a push (:attr:`backlog_limit`)."""
    close_timeout: float = 2.0
    """Seconds a client gets to answer the closing handshake at shutdown."""
    rules: GatewayRules = field(default_factory=GatewayRules)
    """The gateway's limits (on by default, as in production) and fault modes (off by default)."""
    rest_port: int | None = None
    """Serve the REST API (klines, depth, package info, /sim controls) on this port; 0 picks one; None: no REST."""
    rest_rate: float = 10.0
    """REST requests per second per key; more are answered ``{"detail":"Rate limit exceeded"}``."""
    rest_history_seconds: float | None = None
    """A kline ``timestamp`` older than this (market time) is refused with 513; None: no limit."""
    rest_fault: str = "none"
    """The REST fault mode at start (:data:`~bridge.simulator.rest.FAULTS`); ``/sim/rest-fault`` changes it."""
    time_scale: float = 1.0
    """Market seconds per real second: at 60 a 1m bar lasts one second. Event times follow the market clock."""
    quiet_bar_percent: int = 0
    """This share of bar intervals has no trades: no kline push and no REST bar (sparse minutes)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {self.port}")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        for name, rate in (
            ("rate", self.rate),
            ("depth_rate", self.depth_rate),
            ("kline_rate", self.kline_rate),
        ):
            if rate is not None and not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {rate}")
        for name, limit in (
            ("max_pushes", self.max_pushes),
            ("max_depth_pushes", self.max_depth_pushes),
            ("max_kline_pushes", self.max_kline_pushes),
        ):
            if limit is not None and limit < 0:
                raise ValueError(f"{name} must be >= 0, not {limit}")
        if not self.tick_seconds > 0 or not self.close_timeout > 0:
            raise ValueError("tick_seconds and close_timeout must be > 0")
        if self.rest_port is not None and not 0 <= self.rest_port <= 65535:
            raise ValueError(f"rest_port must be in 0..65535, not {self.rest_port}")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0) or not self.rest_rate > 0:
            raise ValueError("time_scale and rest_rate must be finite numbers > 0")
        if not 0 <= self.quiet_bar_percent <= 90:
            raise ValueError(f"quiet_bar_percent must be in 0..90, not {self.quiet_bar_percent}")
        if self.backlog is not None and self.backlog < 1:
            raise ValueError(f"backlog must be >= 1, not {self.backlog}")

    def rate_of(self, stream: Stream) -> float:
        """The push rate of ``stream`` with the defaults applied."""
        if stream is Stream.TRADE:
            return self.rate
        if stream is Stream.DEPTH:
            return self.rate if self.depth_rate is None else self.depth_rate
        return max(1.0, self.rate / 10) if self.kline_rate is None else self.kline_rate

    @property
    def backlog_limit(self) -> int:
        """The backlog in force: as given, or twice the largest burst the pacer can hand out.

        One pacer pass can owe a single connection up to ``MAX_CREDIT_SECONDS`` of every
        stream; a smaller backlog would skip pushes to a client that reads as fast as it can.
        """
        if self.backlog is not None:
            return self.backlog
        burst = sum(self.rate_of(stream) for stream in Stream) * MAX_CREDIT_SECONDS
        return max(MIN_BACKLOG, math.ceil(2 * burst))

    def limit_of(self, stream: Stream) -> int | None:
        """The total push limit of ``stream``, or ``None``."""
        if stream is Stream.TRADE:
            return self.max_pushes
        if stream is Stream.DEPTH:
            return self.max_depth_pushes
        return self.max_kline_pushes


@dataclass(slots=True)
class SimulatorStats:
    """Live counters; the server updates them, callers only read."""

    connections: int = 0
    """Connections open now."""
    connections_total: int = 0
    handshakes_refused: int = 0
    frames_received: int = 0
    """Client frames, all connections, valid or not."""
    pushes_sent: dict[Stream, int] = field(default_factory=lambda: dict.fromkeys(Stream, 0))
    pushes_skipped: int = 0
    """Pushes due to a client whose backlog was full (it did not read fast enough)."""
    garbage_sent: int = 0
    """Bad frames sent by ``garbage_every`` (not counted in :attr:`pushes_sent`)."""
    budget_violations: int = 0
    """Client frames over the frame budget (each answered 501 and its connection cut)."""
    max_frames_in_window_per_key: int = 0
    """The most client frames of the key, over all its connections, in any rolling ``frame_window``."""
    heartbeat_timeouts: int = 0
    """Connections cut with 513 by ``heartbeat_timeout``."""
    connections_aborted: int = 0
    """Connections aborted without a close frame (``close_after_pushes``, ``Simulator.drop_connections``)."""
    cut_at_stop: int = 0
    """Connections whose client had not answered the stop's closing handshake after ``close_timeout``: what
    was still on its way to that client was lost, though the record file lists it as sent."""

    @property
    def trades_sent(self) -> int:
        """Trade pushes written to sockets."""
        return self.pushes_sent[Stream.TRADE]

    @property
    def depth_sent(self) -> int:
        """Depth pushes written to sockets."""
        return self.pushes_sent[Stream.DEPTH]

    @property
    def klines_sent(self) -> int:
        """Kline pushes written to sockets."""
        return self.pushes_sent[Stream.KLINE]
