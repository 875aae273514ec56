"""The vendor protocol with no I/O: classify frames, normalise pushes, plan and budget requests.

Nothing in this package awaits, opens a socket or reads a clock; time comes in as an argument.
It imports nothing of the project but :mod:`bridge.records` and :mod:`bridge.errors`.
"""

from bridge.protocol.budget import FrameBudget
from bridge.protocol.classify import classify_frame
from bridge.protocol.codes import KlineInterval, Recovery, handshake_status_info, vendor_error_info
from bridge.protocol.events import (
    DataOutcome,
    Disconnect,
    FrameKind,
    GapClosed,
    Garbage,
    HeartbeatAck,
    Notice,
    Outcome,
    Push,
    Record,
    Rejected,
    ServerEvent,
    StaleFeed,
    SubscribeAck,
    Subscribed,
    SubscribeRejected,
    UnknownFrame,
    UnsubscribeAck,
    VendorError,
    Welcome,
)
from bridge.protocol.gaps import GapTracker
from bridge.protocol.normalize import normalize_depth, normalize_kline, normalize_trade
from bridge.protocol.requests import ConnectionPlan, Subscription, plan_connections
from bridge.protocol.session import ConnectionSession, ConnectionState, Reception, StalePolicy, run_id

__all__ = [
    "ConnectionPlan",
    "ConnectionSession",
    "ConnectionState",
    "DataOutcome",
    "Disconnect",
    "FrameBudget",
    "FrameKind",
    "GapClosed",
    "GapTracker",
    "Garbage",
    "HeartbeatAck",
    "KlineInterval",
    "Notice",
    "Outcome",
    "Push",
    "Reception",
    "Record",
    "Recovery",
    "Rejected",
    "ServerEvent",
    "StaleFeed",
    "StalePolicy",
    "SubscribeAck",
    "SubscribeRejected",
    "Subscribed",
    "Subscription",
    "UnknownFrame",
    "UnsubscribeAck",
    "VendorError",
    "Welcome",
    "classify_frame",
    "handshake_status_info",
    "normalize_depth",
    "normalize_kline",
    "normalize_trade",
    "plan_connections",
    "run_id",
    "vendor_error_info",
]
