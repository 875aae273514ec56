"""The vendor error catalogue and the classification of refused handshakes."""

from __future__ import annotations

import pytest

from bridge.protocol import Recovery, handshake_status_info, vendor_error_info
from bridge.protocol.codes import VENDOR_ERRORS

# The and the protocol page's split: these codes stop a connection for good.
TERMINAL_FRAMES = {502, 508, 509, 510, 511, 512, 514, 516, 517, 518, 519, 520, 521}
RECONNECT_FRAMES = {500, 501, 513, 515}
REPORT_FRAMES = {503, 504, 505, 506, 507}


def test_catalogue_covers_500_to_521() -> None:
    """Every error code from 500 to 521 has a name, a meaning and a recovery."""
    assert set(VENDOR_ERRORS) == set(range(500, 522))
    assert all(info.name and info.meaning for info in VENDOR_ERRORS.values())


@pytest.mark.parametrize("code", sorted(TERMINAL_FRAMES))
def test_terminal_frames(code: int) -> None:
    """Key, plan and connection-cap errors are terminal: a reconnect cannot fix them."""
    assert vendor_error_info(code).terminal


@pytest.mark.parametrize("code", sorted(RECONNECT_FRAMES))
def test_recoverable_frames(code: int) -> None:
    """Server error, frequency limit, heartbeat timeout and not-JSON reconnect with backoff."""
    assert vendor_error_info(code).recovery is Recovery.RECONNECT


@pytest.mark.parametrize("code", sorted(REPORT_FRAMES))
def test_reported_frames(code: int) -> None:
    """Plan limits and parameter errors are reported with the request's trace; resending would repeat them."""
    assert vendor_error_info(code).recovery is Recovery.REPORT


@pytest.mark.parametrize(
    ("status", "recovery"),
    [
        (401, Recovery.TERMINAL),
        (404, Recovery.TERMINAL),
        (403, Recovery.TERMINAL),
        (429, Recovery.RECONNECT),
        (499, Recovery.RECONNECT),
        (500, Recovery.RECONNECT),
        (502, Recovery.RECONNECT),
        (503, Recovery.RECONNECT),
        (524, Recovery.RECONNECT),
    ],
)
def test_handshake_statuses(status: int, recovery: Recovery) -> None:
    """A refused key (401) and a wrong URL (404) are terminal; quota, proxy and 5xx statuses are retried."""
    assert handshake_status_info(status).recovery is recovery
