"""The simulator's options: validation at construction and the defaults derived from the rate."""

from __future__ import annotations

import pytest

from bridge.records import Stream
from bridge.simulator import GatewayRules, SimulatorOptions
from tests.simulator.support import sim_options


def test_options_refuse_nonsense() -> None:
    """Negative or non-finite rates, negative limits, bad ports and incoherent fault modes fail at construction."""
    bad_options: list[dict[str, object]] = [
        {"rate": -1.0},
        {"depth_rate": float("nan")},
        {"kline_rate": float("inf")},
        {"max_pushes": -1},
        {"port": 70000},
        {"api_key": ""},
        {"backlog": 0},
    ]
    for bad in bad_options:
        with pytest.raises(ValueError, match="must"):
            sim_options(**bad)
    bad_rules: list[dict[str, object]] = [
        {"close_after_pushes": 0},
        {"heartbeat_timeout": 0.0},
        {"heartbeat_timeout": float("nan")},
        {"fail_subscribe_nth": 0},
        {"subscribe_fail_505_nth": -2},
        {"fail_subscribe_nth": 3, "subscribe_fail_505_nth": 3},
        {"refuse_handshake_status": 200},
        {"refuse_handshake_status": 600},
        {"refuse_handshakes": 2},
        {"refuse_handshake_status": 503, "refuse_handshakes": 0},
        {"garbage_every": 0},
        {"frame_limit": -1},
        {"frame_window": 0.0},
        {"frame_window": float("inf")},
        {"max_codes_per_connection": -1},
    ]
    for bad in bad_rules:
        with pytest.raises(ValueError, match="must"):
            GatewayRules(**bad)  # type: ignore[arg-type]


def test_defaults_follow_the_rate() -> None:
    """Depth defaults to the trade rate and klines to a tenth of it, at least one per second."""
    assert SimulatorOptions(rate=500).rate_of(Stream.DEPTH) == 500
    assert SimulatorOptions(rate=500).rate_of(Stream.KLINE) == 50
    assert SimulatorOptions(rate=5).rate_of(Stream.KLINE) == 1
    assert SimulatorOptions(rate=100_000).backlog_limit >= 2 * 0.1 * (100_000 + 100_000 + 10_000)
