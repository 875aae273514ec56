"""Why a vendor socket ended, from the exception the I/O library raised: the feed's one dependency on its errors.

Every message is redacted: an exception's text can carry the URL, and the URL carries the key.
"""

from __future__ import annotations

import os
import socket
import ssl

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bridge.protocol.events import Disconnect
from bridge.records import Cause
from bridge.redact import redact


def disconnect_of(exc: BaseException, secrets: tuple[str, ...]) -> Disconnect:
    """The cause of a socket's end, from the exception the I/O library raised."""
    if isinstance(exc, ConnectionClosed):
        return Disconnect(Cause.CLOSED, detail=redact(f"the connection closed ({exc})", secrets))
    if isinstance(exc, TimeoutError):
        return Disconnect(Cause.TIMEOUT, detail="timed out")
    if isinstance(exc, OSError):
        # asyncio's strerror is "Connect call failed ('127.0.0.1', 2)"; the errno's own words
        # ("connection refused") say what happened. Resolver and TLS errnos are not errno values.
        number = exc.errno if not isinstance(exc, socket.gaierror | ssl.SSLError) else None
        reason = os.strerror(number) if number and number > 0 else exc.strerror or str(exc) or type(exc).__name__
        return Disconnect(Cause.SOCKET_ERROR, detail=redact(reason.lower(), secrets))
    if isinstance(exc, InvalidHandshake):
        return Disconnect(Cause.HANDSHAKE, detail=redact(f"bad WebSocket handshake: {exc}", secrets))
    return Disconnect(Cause.ERROR, detail=redact(f"{type(exc).__name__}: {exc}", secrets))
