"""One bridge process per spool directory: the lock, the error a second process gets, and the look-only probe.

The other process is a real one (a child Python holding the flock), since a lock is per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.spool_lock import SpoolInUse, in_use, lock_directory

HOLD = "import sys, time; from bridge.spool_lock import lock_directory; lock_directory(__import__('pathlib').Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()"  # noqa: E501


def test_a_directory_locked_by_another_process_is_in_use_and_refused_with_its_pid(tmp_path: Path) -> None:
    """While a child holds the lock, ``in_use`` says so and ``lock_directory`` refuses naming the child's pid;
    once the child ends, the lock is free again (the kernel drops it, however the process ends)."""
    directory = tmp_path / "shard-03"
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "held"
            assert in_use(directory)
            with pytest.raises(SpoolInUse, match=f"in use by another bridge process \\(pid {child.pid}\\)"):
                lock_directory(directory)
            assert in_use(directory), "looking did not take the lock from its holder"
        finally:
            child.kill()
            child.wait(timeout=10)
    assert not in_use(directory)
    fd = lock_directory(directory)
    os.close(fd)


def test_a_directory_never_locked_is_not_in_use(tmp_path: Path) -> None:
    """No lock file at all (a directory another tool made) is not in use."""
    assert not in_use(tmp_path)
