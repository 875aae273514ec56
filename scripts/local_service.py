"""What scripts/kafka-local and scripts/registry-local share: a JVM service of their own on 127.0.0.1.

Both start one in its own process group, record its pid, and must later stop that process and
only that one; both explain a failure with the tail of a log. Standard library only, as the
scripts run before any virtualenv exists; they import it as a sibling (a script's folder is first
on ``sys.path``).
"""

import argparse
import os
import re
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

LOG_TAIL_LINES = 40
PROC = Path("/proc")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class ServiceError(Exception):
    """A failure the user can act on; each script's main() prints it as one '<script>: error: ...' message."""


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a tool's output: where Maven, Java and the service put the reason they failed.

    ANSI colour codes are dropped: Maven 3.8 emits them even in batch mode, cluttering the message.
    """
    return "\n".join(strip_colour(text).rstrip().splitlines()[-lines:])


def strip_colour(text: str) -> str:
    """``text`` without ANSI colour codes."""
    return ANSI_ESCAPE.sub("", text)


def read_log_tail(log: Path) -> str:
    """Tail of the service's log for error messages; a missing log is itself worth saying."""
    try:
        return tail(log.read_text(encoding="utf-8", errors="replace")) or "(the log is empty)"
    except FileNotFoundError:
        return f"(no log at {log})"


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return not PROC.is_dir()  # it just exited; or no /proc at all (macOS), where os.kill is all we have
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def recorded_pid(pid_file: Path, markers: Sequence[bytes]) -> int | None:
    """The pid in ``pid_file`` if that process still runs with every one of ``markers`` among its arguments.

    Checking the command line guards against pid reuse: after a reboot or crash the recorded pid may
    belong to an unrelated process that must not be signalled.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    if PROC.is_dir():
        try:
            args = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return None
        if not all(marker in args for marker in markers):
            return None
    return pid


def port_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:<port>. SO_REUSEADDR, as the JVM sets it, so sockets
    in TIME_WAIT from a just-stopped service do not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def terminate(pid: int, timeout_s: float, what: str) -> str:
    """Stop ``what`` (``broker``, ``registry``): its whole process group, SIGTERM first so it shuts down cleanly,
    SIGKILL after the timeout. Returns how it ended, for the caller's message."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return "stopped"
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        raise ServiceError(f"{what} pid {pid} survived SIGKILL")
    return f"killed (no exit within {timeout_s:.0f} s of SIGTERM)"


def positive_float(text: str) -> float:
    """argparse type for --timeout: zero or negative would make start fail without trying."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def tcp_port(text: str) -> int:
    """argparse type for ports, rejecting values no socket can bind."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value
