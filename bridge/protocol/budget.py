"""The gateway's frame budget: at most N client frames in any rolling window per connection.

The protocol page allows 60 frames per minute per connection, subscribes, unsubscribes and
heartbeats together; exceeding it earns error 501 and a cut connection. This is the only gate
every outgoing frame passes, so the limit holds for any sequence of requests.
"""

from __future__ import annotations

from collections import deque

from bridge.errors import LocalProtocolError

DEFAULT_FRAME_LIMIT = 60
DEFAULT_FRAME_WINDOW_SECONDS = 60.0


class FrameBudget:
    """Counts frames sent in the last ``window`` seconds; time is always passed in.

    A frame sent at ``t`` stops counting at ``t + window`` (the window is half-open), so when
    the budget is full the next frame may go exactly ``window`` after the oldest counted one.
    """

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT, window: float = DEFAULT_FRAME_WINDOW_SECONDS) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a frame budget needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] + self.window <= now:
            self._sent.popleft()

    def used(self, now: float) -> int:
        """Frames counted against the window ending at ``now``."""
        self._expire(now)
        return len(self._sent)

    def next_slot(self, now: float, *, reserve: int = 0) -> float:
        """The earliest instant >= ``now`` at which a frame may go, keeping ``reserve`` frames free.

        ``reserve`` keeps room for heartbeats: subscribes pass a reserve, heartbeats pass none.
        """
        allowed = max(self.limit - reserve, 1)
        self._expire(now)
        if len(self._sent) < allowed:
            return now
        return self._sent[len(self._sent) - allowed] + self.window

    def record(self, now: float) -> None:
        """Count a frame sent at ``now``.

        Raises:
            LocalProtocolError: if the frame would exceed the budget (the caller skipped
                :meth:`next_slot`, a bug that must not reach the gateway).
        """
        self._expire(now)
        if len(self._sent) >= self.limit:
            raise LocalProtocolError(f"frame budget exceeded: {self.limit} frames in {self.window:g}s already sent")
        if self._sent and now < self._sent[-1]:
            raise LocalProtocolError("frame budget: time went backwards")
        self._sent.append(now)
