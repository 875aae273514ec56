"""``--record-sent``: one JSON line per frame the simulator sent, the oracle of end-to-end tests.

A test that wants to know what the bridge should have produced reads this file: every push
sent, in sending order, as ``{"business": ..., "frame": "<the exact text>"}``; every bad frame of
``garbage_every`` the same with ``"garbage": <kind>`` (a binary frame as its bytes read as latin-1
text). Lines are buffered and flushed by the server every pacer tick and at shutdown, so a
reader sees them within about 10 ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import orjson

from bridge.simulator.gateway import GarbageKind


class SentRecorder:
    """Appends the lines of the frames sent to one file; not thread-safe (one event loop writes)."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` for appending.

        Raises:
            OSError: the file cannot be opened.
        """
        self._file: IO[bytes] = path.open("ab")
        self._dirty = False

    def write(self, business: str, frame: bytes) -> None:
        """Record one push (UTF-8 JSON text) as sent."""
        self._file.write(orjson.dumps({"business": business, "frame": frame.decode()}) + b"\n")
        self._dirty = True

    def write_garbage(self, business: str, frame: str | bytes, kind: GarbageKind) -> None:
        """Record one bad frame with its kind."""
        text = frame.decode("latin-1") if isinstance(frame, bytes) else frame
        self._file.write(orjson.dumps({"business": business, "frame": text, "garbage": kind}) + b"\n")
        self._dirty = True

    def flush(self) -> None:
        """Hand buffered lines to the operating system, if there are any."""
        if self._dirty:
            self._file.flush()
            self._dirty = False

    def close(self) -> None:
        """Flush and close; the recorder is unusable afterwards."""
        self.flush()
        self._file.close()
