"""A local stand-in for the vendor's WebSocket feed, for ``make demo``, tests and benchmarks.

It speaks the protocol as it really behaves (``../shared/protocol/INFOWAY-WS.md``): the 401
handshake, the stock greeting, acks with traces, error frames with ``traceId``, and pushes whose
decimal strings vary in scale like the production captures. Layers, from pure to I/O:

* :mod:`~bridge.simulator.market`: prices and push payloads (seeded, no clock, no I/O);
* :mod:`~bridge.simulator.session`: one connection's client frames to replies (no I/O);
* :mod:`~bridge.simulator.gateway`: the gateway's limits (60 frames a minute, 600 codes) and the
  fault modes, decided with time passed in (no I/O, no clock);
* :mod:`~bridge.simulator.server`: the asyncio server, pacing and recording;
* :mod:`~bridge.simulator.cli`: ``infoway-bridge simulate``.
"""

from bridge.simulator.gateway import GARBAGE_KINDS, GatewayRules
from bridge.simulator.market import BUSINESSES, Market
from bridge.simulator.server import Simulator, SimulatorOptions, SimulatorStats
from bridge.simulator.session import ClientFrame, ClientInfo

__all__ = [
    "BUSINESSES",
    "GARBAGE_KINDS",
    "ClientFrame",
    "ClientInfo",
    "GatewayRules",
    "Market",
    "Simulator",
    "SimulatorOptions",
    "SimulatorStats",
]
