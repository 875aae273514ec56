"""WebSocket frames from the server, as bytes, with no I/O (RFC 6455 section 5.2).

The simulator's fast path writes many pushes in one transport write instead of one awaited
``send`` each, so it frames them itself: a server's frames are unmasked, final, and carry their
length in 7, 16 or 64 bits. The bytes are the same as websockets would write (a test compares
them); ``compression`` is off on the server, so no extension changes them.
"""

from __future__ import annotations

from typing import Final

_TEXT: Final = 0x81
"""FIN and opcode 1 (text)."""
_BINARY: Final = 0x82
"""FIN and opcode 2 (binary)."""
_SHORT: Final = tuple(bytes((_TEXT, length)) for length in range(126))
"""The text frame headers of payloads under 126 bytes, made once."""


def header(length: int, first: int = _TEXT) -> bytes:
    """The header of a final, unmasked frame whose first byte is ``first`` and payload ``length`` bytes."""
    if length < 126:
        return _SHORT[length] if first == _TEXT else bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def text_frame(payload: bytes) -> bytes:
    """A complete text frame of ``payload`` (UTF-8 text)."""
    return header(len(payload)) + payload


def frame(message: str | bytes) -> bytes:
    """A complete frame of ``message``: text for ``str``, binary for ``bytes``, as websockets' ``send`` does."""
    if isinstance(message, str):
        return text_frame(message.encode())
    return header(len(message), _BINARY) + message
