"""Server frames built by hand, pure: byte for byte what websockets itself writes."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from bridge.simulator.wire import frame, text_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_and_binary_frames_match_websockets_at_every_length_boundary(length: int) -> None:
    """7-bit, 16-bit and 64-bit lengths, unmasked and final, as ``Frame.serialize`` writes them."""
    payload = b"x" * length
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert frame(payload.decode()) == text_frame(payload)
    assert frame(payload) == Frame(Opcode.BINARY, payload).serialize(mask=False)
