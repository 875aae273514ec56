"""Who uses a spool directory: one bridge process at a time, holding ``flock`` on its ``lock`` file.

The lock file holds the pid of the process that took it (for the error a second process gets);
the kernel drops the lock when that process ends, however it ends, so a kill -9 leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from bridge.errors import ConfigError


class SpoolInUse(ConfigError):
    """The spool directory is locked by another live bridge process."""


def lock_directory(directory: Path) -> int:
    """Create ``directory`` if needed and lock it for this process; returns the lock's descriptor (close to release).

    Raises:
        SpoolInUse: another live process holds the lock.
        ConfigError: the directory cannot be created or written.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"spool.dir: cannot use {directory}: {exc.strerror}; give a writable directory") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SpoolInUse(
            f"spool.dir: {directory} is in use by another bridge process (pid {holder}); "
            "give every bridge process its own spool directory"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"spool.dir: cannot write to {directory}: {exc.strerror}") from exc
    return fd


def in_use(directory: Path) -> bool:
    """Whether a live process holds the lock of the spool ``directory`` (read from ``/proc/locks``).

    Only looks: trying the lock, even for an instant, could make the owner's own start fail.
    Where ``/proc/locks`` is missing (not Linux) it says no, and opening the spool decides.
    """
    try:
        inode = (directory / "lock").stat().st_ino
        table = Path("/proc/locks").read_text(encoding="ascii")
    except OSError:
        return False
    # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter adds "->" after the number)
    held = (line.split() for line in table.splitlines() if "FLOCK" in line)
    return any(field.count(":") == 2 and field.rsplit(":", 1)[1] == str(inode) for fields in held for field in fields)
