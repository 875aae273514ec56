"""A local stand-in for the vendor's WebSocket feed, for ``make demo``, tests and benchmarks.

It speaks the protocol as it really behaves (``docs/protocol/INFOWAY-WS.md``): the 401
handshake, the stock greeting, acks with traces, error frames with ``traceId``, and pushes whose
decimal strings vary in scale like the production captures. Layers, from pure to I/O:

* :mod:`~bridge.simulator.market`: prices and push payloads (seeded, no clock, no I/O), with
  :mod:`~bridge.simulator.payloads` (their shapes, the push frame) and :mod:`~bridge.simulator.bars`
  (where bars start);
* :mod:`~bridge.simulator.replies`: one connection's client frames to replies (no I/O);
* :mod:`~bridge.simulator.gateway`: the gateway's limits (60 frames a minute, 600 codes) and the
  fault modes, decided with time passed in (no I/O, no clock);
* :mod:`~bridge.simulator.pacer`: rates into pushes owed, round-robin over the subscribed pairs
  (no I/O, no clock);
* :mod:`~bridge.simulator.options`: the options (the gateway's rules nested) and the counters;
* :mod:`~bridge.simulator.recorder`: the ``--record-sent`` file;
* :mod:`~bridge.simulator.http_answers`: the plain HTTP answers on the port (refused handshakes);
* :mod:`~bridge.simulator.connection`: one connection's reader and sender;
* :mod:`~bridge.simulator.server`: the asyncio server: listening, handshakes, connections, pacing;
* :mod:`~bridge.simulator.cli`: ``infoway-bridge simulate``.
"""

from bridge.simulator.gateway import GARBAGE_KINDS, GatewayRules
from bridge.simulator.market import BUSINESSES, Market
from bridge.simulator.options import SimulatorOptions, SimulatorStats
from bridge.simulator.replies import ClientFrame, ClientInfo
from bridge.simulator.server import Simulator

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
